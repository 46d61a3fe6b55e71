"""Users: the accounts authentication logs in (auth/), without the example blog around them.

Their rows are the users table; the password hashes live in auth's credentials table. Add
your own resources that reference them with ``owner_id:ref:users``.
"""
