"""Schemathesis hooks (``SCHEMATHESIS_HOOKS=tests.fuzz_auth``): a bearer token for the fuzzer.

The token belongs to a user registered for the purpose at ``FUZZ_BASE_URL``. The fuzzer
deletes and deactivates users at random, its own among them; schemathesis fetches a new
token whenever an answer is 401, so a fresh user is registered and logged in then.
"""

import json
import os
import urllib.parse
import urllib.request
import uuid
from typing import Any

import schemathesis

PASSWORD = "correct horse battery staple"


def _post(url: str, data: bytes, content_type: str) -> Any:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@schemathesis.auth()
class FreshUser:
    def get(self, case: Any, context: Any) -> str:
        base = os.environ["FUZZ_BASE_URL"]
        email = f"fuzz-{uuid.uuid4().hex}@example.org"
        user = {"email": email, "name": "Fuzz", "password": PASSWORD}
        _post(f"{base}/api/auth/register", json.dumps(user).encode(), "application/json")
        form = urllib.parse.urlencode({"username": email, "password": PASSWORD}).encode()
        token = _post(f"{base}/api/auth/token", form, "application/x-www-form-urlencoded")
        return str(token["access_token"])

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}
