"""Users: the accounts that own the project's data.

Resources of your own reference them with ``owner_id:ref:users``.
"""
