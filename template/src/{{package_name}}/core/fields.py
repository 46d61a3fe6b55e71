"""Field types the API schemas share, with every limit the storage has written in the schema.

A limit the database enforces but the OpenAPI schema does not state is a 500 waiting for
a client to find it, and a schema that accepts what validation refuses misleads every
client generated from it. So ids are bounded by the 64-bit keys, and text refuses U+0000,
which PostgreSQL cannot store in a text column (SQLite could: both databases answer alike).
"""

from typing import Annotated

from pydantic import Field

# The largest key a BIGINT (and SQLite's INTEGER) holds.
MAX_ID = 2**63 - 1

# A row's id, in a path, a query or a body.
Id = Annotated[int, Field(ge=1, le=MAX_ID)]

# Text without U+0000.
NO_NUL = r"^[^\x00]*$"
# Text without U+0000 and with one character at least that is not whitespace: what a
# string stripped of surrounding whitespace must satisfy to stay non-empty, said in the
# schema (``minLength`` alone would promise that "  " is accepted).
NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"
