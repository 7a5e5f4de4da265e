"""Schemathesis auth for scripts/schemathesis: a fresh access token for the
staff account the script made, fetched again whenever an answer is a 401.

A fixed `-H "Authorization: Bearer …"` does not last the run: the fuzzer
calls POST /api/token/logout-all/ and DELETE /api/admin/users/{id}/sessions/,
which revoke every token of the account, and every later authenticated
request would then test only the 401 path.
"""

import json
import os
import urllib.request

import schemathesis


@schemathesis.auth(refresh_interval=None)
class StaffToken:
    def get(self, case, context):
        body = json.dumps(
            {
                "username": os.environ["FUZZ_USERNAME"],
                "password": os.environ["FUZZ_PASSWORD"],
            }
        ).encode()
        request = urllib.request.Request(
            os.environ["FUZZ_BASE"] + "/api/token/",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)["access"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
