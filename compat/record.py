#!/usr/bin/env python3
"""Record what the real djangorestframework-simplejwt 5.5.1 answers.

Run it with a Python that has djangorestframework-simplejwt==5.5.1, Django 5.2.x,
djangorestframework>=3.16 and PyJWT>=2.10 installed (see README.md):

    python compat/record.py            # (re)writes compat/simplejwt-5.5.1.json
    python compat/record.py --check    # regenerates into memory, exits 1 if the file differs
    python compat/record.py --only NAME [--only NAME ...] --print
                                       # run some cases and print them (debugging)

How it works:
  * The parent process owns the case list (CASES below).  For every profile it starts
    a child process (`record.py --worker PROFILE --out FILE`), because simplejwt reads
    several settings at import time (token lifetimes, AUTH_HEADER_TYPES, the token
    backend, BLACKLIST_AFTER_ROTATION in serializers.py), so a profile cannot be changed
    inside a running process.
  * The child configures Django in-process with settings.configure() (no project
    files), an in-memory SQLite DB, runs the migrations, and sends every request of the
    profile's cases through django.test.Client.  Before EVERY case the world is reset
    (all tokens and users deleted, the three users re-created with fixed ids).
  * Request templates contain placeholders ({{access:alice}}, {{jwt:{...}}}, ...) that
    are expanded just before the request is sent; the fixture keeps the unexpanded
    template so that the Rust replayer can expand them the same way.
  * Responses are normalised (every JWT in a body becomes <JWT>, 500 pages become
    "<html 500>") so that the output is identical on every run.
"""

import argparse
import base64
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "simplejwt-5.5.1.json")

SIGNING_KEY = "compat-signing-key-0123456789abcdef0123456789abcdef"
# Used only by {{jwt_key:...}} templates in the cases below (the bad-signature cases).
OTHER_KEY = "some-other-key-0123456789abcdef0123456789abcdef"

PASSWORD_HASHER = "django.contrib.auth.hashers.MD5PasswordHasher"
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

USERS = [
    {"id": 1, "username": "alice", "password": "alice-password-1",
     "email": "alice@example.com", "is_active": True, "is_staff": False},
    {"id": 2, "username": "bob", "password": "bob-password-2",
     "email": "bob@example.com", "is_active": False, "is_staff": False},
    {"id": 3, "username": "carol", "password": "carol-password-3",
     "email": "", "is_active": True, "is_staff": True},
]

SLIDING = "rest_framework_simplejwt.tokens.SlidingToken"
ACCESS = "rest_framework_simplejwt.tokens.AccessToken"

# JSON form (as written to the fixture).  Tuples in the real settings are lists here.
PROFILES = {
    "default": {},
    "rotate": {"ROTATE_REFRESH_TOKENS": True, "BLACKLIST_AFTER_ROTATION": True},
    "rotate_no_blacklist": {"ROTATE_REFRESH_TOKENS": True},
    "revoke": {"CHECK_REVOKE_TOKEN": True},
    "aud_iss": {"AUDIENCE": "you", "ISSUER": "me"},
    "leeway": {"LEEWAY": 30},
    "header_types": {"AUTH_HEADER_TYPES": ["Bearer", "JWT"]},
    "sliding_auth": {"AUTH_TOKEN_CLASSES": [SLIDING, ACCESS]},
    "custom_header": {"AUTH_HEADER_NAME": "HTTP_X_ACCESS_TOKEN"},
}


def simple_jwt_settings(profile):
    s = {"SIGNING_KEY": SIGNING_KEY, "ALGORITHM": "HS256"}
    for k, v in PROFILES[profile].items():
        s[k] = tuple(v) if isinstance(v, list) else v
    return s


def user_salt(username):
    # Fixed salts so that the stored hashes (and hash_password claims) are reproducible.
    return "compatsalt" + username


# ----------------------------------------------------------------------------------------
# Case-building helpers
# ----------------------------------------------------------------------------------------

def jdump(v):
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _val(v):
    # A string containing a placeholder is inserted verbatim (it is expanded before the
    # body is sent, so its inner quotes must not be escaped).  Such strings must not
    # contain anything else that JSON would need to escape; write those bodies by hand.
    if isinstance(v, str) and "{{" in v:
        assert not re.search(r'[\x00-\x1f\\]', v), v
        return '"' + v + '"'
    return jdump(v)


def body(d):
    """Compact JSON text of a dict whose string values may contain placeholders."""
    return "{" + ",".join(jdump(k) + ":" + _val(v) for k, v in d.items()) + "}"


DROP = object()


def claims(base, **kw):
    d = dict(base)
    for k, v in kw.items():
        if v is DROP:
            d.pop(k, None)
        else:
            d[k] = v
    return d


def R(**kw):
    return claims({"token_type": "refresh", "exp": "$now+86400", "iat": "$now",
                   "jti": "$jti", "user_id": "1"}, **kw)


def A(**kw):
    return claims({"token_type": "access", "exp": "$now+300", "iat": "$now",
                   "jti": "$jti", "user_id": "1"}, **kw)


def S(**kw):
    return claims({"token_type": "sliding", "exp": "$now+300", "iat": "$now",
                   "jti": "$jti", "refresh_exp": "$now+86400", "user_id": "1"}, **kw)


def jwt(c, key=None, alg=None, kid=None):
    if kid is not None:
        return "{{jwt_kid:%s:%s}}" % (kid, jdump(c))
    if key is not None:
        return "{{jwt_key:%s:%s}}" % (key, jdump(c))
    if alg is not None:
        return "{{jwt_alg:%s:%s}}" % (alg, jdump(c))
    return "{{jwt:%s}}" % jdump(c)


def access(u="alice"):
    return "{{access:%s}}" % u


def refresh(u="alice"):
    return "{{refresh:%s}}" % u


def sliding(u="alice"):
    return "{{sliding:%s}}" % u


def blacklisted(u="alice"):
    return "{{blacklisted_refresh:%s}}" % u


def step(i, field):
    return "{{step%d.body.%s}}" % (i, field)


JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def req(method, path, body_text="", headers=None):
    return {"method": method, "path": path, "headers": dict(headers or {}), "body": body_text}


def post(path, data, ct=JSON, headers=None):
    h = {}
    if ct is not None:
        h["Content-Type"] = ct
    h.update(headers or {})
    text = body(data) if isinstance(data, dict) else data
    return req("POST", path, text, h)


def get(path, headers=None):
    return req("GET", path, "", headers)


def bearer(tok, scheme="Bearer"):
    return {"Authorization": "%s %s" % (scheme, tok)}


OBTAIN = "/api/token/"
REFRESH = "/api/token/refresh/"
VERIFY = "/api/token/verify/"
BLACKLIST = "/api/token/blacklist/"
SOBTAIN = "/api/token/sliding/"
SREFRESH = "/api/token/sliding/refresh/"
ME = "/api/users/me/"

ALICE = {"username": "alice", "password": "alice-password-1"}


def login(u="alice", pw="alice-password-1"):
    return post(OBTAIN, {"username": u, "password": pw})


def build_cases():
    cases = []

    def case(name, profile, *steps, note=None):
        c = {"name": name, "profile": profile}
        if note:
            c["note"] = note
        c["steps"] = [s if "action" in s else {"request": s} for s in steps]
        cases.append(c)

    D = "default"

    # ---------------------------------------------------------------- obtain pair (§1.1)
    case("obtain_ok_json", D, login())
    case("obtain_ok_json_charset", D, post(OBTAIN, ALICE, ct="application/json; charset=utf-8"))
    case("obtain_ok_form", D, post(OBTAIN, "username=alice&password=alice-password-1", ct=FORM))
    boundary = "compatboundary0123456789"
    mp = ("--{b}\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nalice\r\n"
          "--{b}\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nalice-password-1\r\n"
          "--{b}--\r\n").format(b=boundary)
    case("obtain_ok_multipart", D, post(OBTAIN, mp, ct="multipart/form-data; boundary=" + boundary))
    case("obtain_ok_carol_staff", D, login("carol", "carol-password-3"))
    case("obtain_trim_whitespace", D,
         post(OBTAIN, {"username": " alice ", "password": "  alice-password-1\t"}))
    case("obtain_trim_whitespace_newlines", D,
         post(OBTAIN, {"username": "\nalice\r\n", "password": "\talice-password-1 \n"}))
    case("obtain_trim_whitespace_form", D,
         post(OBTAIN, "username=+alice+&password=%20alice-password-1%09", ct=FORM))
    case("obtain_number_password_coerced", D, post(OBTAIN, {"username": "alice", "password": 12345}),
         note="12345 is coerced to the string \"12345\": a credentials failure, not a 400")
    case("obtain_float_password_coerced", D, post(OBTAIN, {"username": "alice", "password": 1.5}))
    case("obtain_number_username_coerced", D, post(OBTAIN, {"username": 1, "password": "alice-password-1"}))
    case("obtain_wrong_password", D, login("alice", "wrong-password"))
    case("obtain_unknown_user", D, login("mallory", "whatever"))
    case("obtain_inactive_user", D, login("bob", "bob-password-2"))
    case("obtain_inactive_user_wrong_password", D, login("bob", "nope"))
    case("obtain_username_case_sensitive", D, login("Alice", "alice-password-1"))
    case("obtain_unicode_username", D, login("ålice☃", "pässwörd"))
    case("obtain_missing_fields", D, post(OBTAIN, "{}"))
    case("obtain_missing_password", D, post(OBTAIN, {"username": "alice"}))
    case("obtain_missing_username", D, post(OBTAIN, {"password": "alice-password-1"}))
    case("obtain_blank_fields", D, post(OBTAIN, {"username": "", "password": ""}))
    case("obtain_whitespace_only_fields", D, post(OBTAIN, {"username": "   ", "password": "\t"}))
    case("obtain_null_fields", D, post(OBTAIN, {"username": None, "password": None}))
    case("obtain_blank_and_null", D, post(OBTAIN, {"username": "", "password": None}))
    case("obtain_bool_password", D, post(OBTAIN, {"username": "alice", "password": True}))
    case("obtain_bool_username", D, post(OBTAIN, {"username": False, "password": "alice-password-1"}))
    case("obtain_list_password", D, post(OBTAIN, {"username": "alice", "password": ["alice-password-1"]}))
    case("obtain_object_password", D, post(OBTAIN, {"username": "alice", "password": {"a": 1}}))
    case("obtain_list_and_object", D, post(OBTAIN, {"username": ["alice"], "password": {"a": 1}}))
    case("obtain_extra_fields_ignored", D,
         post(OBTAIN, {"username": "alice", "password": "alice-password-1", "extra": 1,
                       "token_type": "sliding", "user_id": "3"}))
    case("obtain_duplicate_keys_last_wins", D,
         post(OBTAIN, '{"username":"bob","password":"x","username":"alice","password":"alice-password-1"}'),
         note="Python's json module keeps the last value of a duplicated key")
    case("obtain_json_array_empty", D, post(OBTAIN, "[]"))
    case("obtain_json_array", D, post(OBTAIN, "[" + body(ALICE) + "]"))
    case("obtain_json_string", D, post(OBTAIN, '"alice"'))
    case("obtain_json_number", D, post(OBTAIN, "42"))
    case("obtain_json_true", D, post(OBTAIN, "true"))
    case("obtain_json_null", D, post(OBTAIN, "null"))
    case("obtain_malformed_open_brace", D, post(OBTAIN, "{"))
    case("obtain_malformed_single_quotes", D, post(OBTAIN, "{'a':1}"))
    case("obtain_malformed_missing_value", D, post(OBTAIN, '{"a":}'))
    case("obtain_malformed_trailing_comma", D, post(OBTAIN, '{"username":"alice",}'))
    case("obtain_malformed_trailing_garbage", D, post(OBTAIN, body(ALICE) + "x"))
    case("obtain_malformed_two_objects", D, post(OBTAIN, body(ALICE) + body(ALICE)))
    case("obtain_malformed_nan", D, post(OBTAIN, '{"username":"alice","password":NaN}'))
    case("obtain_malformed_plain_text_as_json", D, post(OBTAIN, "username=alice&password=alice-password-1"))
    case("obtain_json_trailing_whitespace_ok", D, post(OBTAIN, " \n" + body(ALICE) + " \n"))
    case("obtain_empty_body_json", D, post(OBTAIN, ""))
    case("obtain_empty_body_no_content_type", D, post(OBTAIN, "", ct=None))
    case("obtain_text_plain", D, post(OBTAIN, body(ALICE), ct="text/plain"))
    case("obtain_xml", D, post(OBTAIN, "<a/>", ct="application/xml"))
    case("obtain_no_content_type", D, post(OBTAIN, body(ALICE), ct=None),
         note="no CONTENT_TYPE in the WSGI environ at all (what gunicorn does; runserver/wsgiref "
              "would substitute text/plain)")
    case("obtain_form_as_json_content", D, post(OBTAIN, body(ALICE), ct=FORM))
    case("obtain_ignores_authorization_header", D,
         post(OBTAIN, ALICE, headers={"Authorization": "Bearer garbage"}))
    for m in ("GET", "PUT", "PATCH", "DELETE"):
        case("obtain_method_%s" % m.lower(), D,
             req(m, OBTAIN, body(ALICE) if m in ("PUT", "PATCH") else "",
                 {"Content-Type": JSON} if m in ("PUT", "PATCH") else {}))
    case("obtain_options", D, req("OPTIONS", OBTAIN))
    case("obtain_head", D, req("HEAD", OBTAIN))

    # ------------------------------------------------------------- obtain sliding (§1.5)
    case("sliding_obtain_ok", D, post(SOBTAIN, ALICE))
    case("sliding_obtain_ok_form", D, post(SOBTAIN, "username=alice&password=alice-password-1", ct=FORM))
    case("sliding_obtain_wrong_password", D, post(SOBTAIN, {"username": "alice", "password": "no"}))
    case("sliding_obtain_inactive_user", D, post(SOBTAIN, {"username": "bob", "password": "bob-password-2"}))
    case("sliding_obtain_missing_fields", D, post(SOBTAIN, "{}"))
    case("sliding_obtain_method_get", D, get(SOBTAIN))
    case("sliding_obtain_options", D, req("OPTIONS", SOBTAIN))

    # ---------------------------------------------------------------------- refresh (§1.2)
    case("refresh_ok", D, post(REFRESH, {"refresh": refresh()}))
    case("refresh_ok_form", D, post(REFRESH, "refresh=" + refresh(), ct=FORM))
    case("refresh_ok_after_login", D, login(), post(REFRESH, {"refresh": step(0, "refresh")}))
    case("refresh_ok_crafted_unrecorded", D, post(REFRESH, {"refresh": jwt(R())}),
         note="a validly signed refresh token that was never recorded in OutstandingToken")
    case("refresh_copies_custom_claims", D,
         post(REFRESH, {"refresh": jwt(R(username="alice", scope=["a", "b"], nested={"k": 1}))}))
    case("refresh_no_user_id_claim", D, post(REFRESH, {"refresh": jwt(R(user_id=DROP))}),
         note="no user_id: user checks are skipped and the access token lacks user_id")
    case("refresh_user_id_int", D, post(REFRESH, {"refresh": jwt(R(user_id=1))}))
    case("refresh_user_id_int_zero", D, post(REFRESH, {"refresh": jwt(R(user_id=0))}),
         note="falsy user_id: the user lookup is skipped")
    case("refresh_user_id_string_zero", D, post(REFRESH, {"refresh": jwt(R(user_id="0"))}),
         note="truthy unknown user_id: DoesNotExist is not caught in 5.5.1")
    case("refresh_user_id_abc", D, post(REFRESH, {"refresh": jwt(R(user_id="abc"))}),
         note="ValueError on the int pk lookup: 500 in 5.5.1")
    case("refresh_user_inactive", D, post(REFRESH, {"refresh": refresh("bob")}))
    case("refresh_user_deleted_crafted", D, post(REFRESH, {"refresh": jwt(R(user_id="99"))}),
         note="DoesNotExist is not caught in 5.5.1: 500")
    case("refresh_user_deleted_after_login", D,
         login(),
         {"action": "delete_user", "username": "alice"},
         post(REFRESH, {"refresh": step(0, "refresh")}),
         get(ME, bearer(step(0, "access"))),
         post(VERIFY, {"token": step(0, "refresh")}),
         post(BLACKLIST, {"refresh": step(0, "refresh")}),
         note="deleted user: refresh 500 in 5.5.1; me -> user_not_found; verify 200; blacklist 200")
    case("refresh_user_deactivated_after_login", D,
         login(),
         {"action": "deactivate", "username": "alice"},
         post(REFRESH, {"refresh": step(0, "refresh")}),
         get(ME, bearer(step(0, "access"))),
         post(VERIFY, {"token": step(0, "access")}),
         login())
    # An account changed after it was used: simplejwt reads the user on every
    # request, so the very next one sees the change (issue 15).
    case("me_then_deactivate", D,
         login(),
         get(ME, bearer(step(0, "access"))),
         {"action": "deactivate", "username": "alice"},
         get(ME, bearer(step(0, "access"))),
         post(REFRESH, {"refresh": step(0, "refresh")}))
    case("me_then_delete", D,
         login(),
         get(ME, bearer(step(0, "access"))),
         {"action": "delete_user", "username": "alice"},
         get(ME, bearer(step(0, "access"))),
         post(REFRESH, {"refresh": step(0, "refresh")}))
    case("sliding_then_deactivate", D,
         post(SOBTAIN, ALICE),
         {"action": "deactivate", "username": "alice"},
         post(SREFRESH, {"token": step(0, "token")}))
    # A kid simplejwt does not know (it knows none): ignored (issue 15).
    case("me_unknown_kid", D, get(ME, bearer(jwt(A(), kid="key-1"))))
    case("verify_unknown_kid", D, post(VERIFY, {"token": jwt(A(), kid="key-1")}))
    case("refresh_unknown_kid", D, post(REFRESH, {"refresh": jwt(R(), kid="key-1")}))
    case("refresh_access_token_given", D, post(REFRESH, {"refresh": access()}))
    case("refresh_sliding_token_given", D, post(REFRESH, {"refresh": sliding()}))
    case("refresh_garbage", D, post(REFRESH, {"refresh": "garbage"}))
    case("refresh_garbage_three_segments", D, post(REFRESH, {"refresh": "aaa.bbb.ccc"}))
    case("refresh_bad_signature", D, post(REFRESH, {"refresh": jwt(R(), key=OTHER_KEY)}))
    case("refresh_alg_hs384", D, post(REFRESH, {"refresh": jwt(R(), alg="HS384")}))
    case("refresh_alg_hs512", D, post(REFRESH, {"refresh": jwt(R(), alg="HS512")}))
    case("refresh_expired", D, post(REFRESH, {"refresh": jwt(R(exp="$now-10", iat="$now-86410"))}))
    case("refresh_expired_long_ago", D, post(REFRESH, {"refresh": jwt(R(exp="$now-100000", iat="$now-186400"))}))
    case("refresh_no_exp", D, post(REFRESH, {"refresh": jwt(R(exp=DROP))}))
    case("refresh_exp_string", D, post(REFRESH, {"refresh": jwt(R(exp="tomorrow"))}))
    case("refresh_exp_float", D, post(REFRESH, {"refresh": jwt(R(exp=4102444800.5))}),
         note="exp = 2100-01-01T00:00:00.5Z as a JSON float")
    case("refresh_no_iat", D, post(REFRESH, {"refresh": jwt(R(iat=DROP))}))
    case("refresh_no_jti", D, post(REFRESH, {"refresh": jwt(R(jti=DROP))}),
         note="blacklist app installed: check_blacklist reads payload['jti'] -> KeyError -> 500")
    case("refresh_jti_integer", D, post(REFRESH, {"refresh": jwt(R(jti=12345))}),
         note="PyJWT >= 2.10 requires a string jti")
    case("refresh_sub_integer", D, post(REFRESH, {"refresh": jwt(R(sub=1))}),
         note="PyJWT >= 2.10 requires a string sub")
    case("refresh_sub_string", D, post(REFRESH, {"refresh": jwt(R(sub="1"))}))
    case("refresh_no_token_type", D, post(REFRESH, {"refresh": jwt(R(token_type=DROP))}))
    case("refresh_wrong_type_crafted", D, post(REFRESH, {"refresh": jwt(R(token_type="bogus"))}))
    case("refresh_wrong_type_access_crafted", D, post(REFRESH, {"refresh": jwt(A())}))
    case("refresh_iat_in_future", D, post(REFRESH, {"refresh": jwt(R(iat="$now+3600"))}))
    case("refresh_nbf_in_future", D, post(REFRESH, {"refresh": jwt(R(nbf="$now+3600"))}))
    case("refresh_nbf_in_past", D, post(REFRESH, {"refresh": jwt(R(nbf="$now-60"))}))
    case("refresh_aud_ignored_without_setting", D,
         post(REFRESH, {"refresh": jwt(R(aud="someone-else", iss="someone"))}))
    case("refresh_blacklisted", D, post(REFRESH, {"refresh": blacklisted()}))
    case("refresh_missing_field", D, post(REFRESH, "{}"))
    case("refresh_blank_field", D, post(REFRESH, {"refresh": ""}))
    case("refresh_null_field", D, post(REFRESH, {"refresh": None}))
    case("refresh_int_field", D, post(REFRESH, {"refresh": 1}))
    case("refresh_list_field", D, post(REFRESH, {"refresh": [refresh()]}))
    case("refresh_token_with_whitespace", D, post(REFRESH, '{"refresh":"  ' + refresh() + '\\n"}'),
         note="CharField trims whitespace around the token")
    case("refresh_malformed_json", D, post(REFRESH, "{"))
    case("refresh_method_get", D, get(REFRESH))
    case("refresh_options", D, req("OPTIONS", REFRESH))
    # rotation
    case("refresh_rotate_ok", "rotate", post(REFRESH, {"refresh": refresh()}))
    case("refresh_rotate_reuse_blacklisted", "rotate",
         login(),
         post(REFRESH, {"refresh": step(0, "refresh")}),
         post(REFRESH, {"refresh": step(0, "refresh")}),
         post(REFRESH, {"refresh": step(1, "refresh")}),
         post(VERIFY, {"token": step(0, "refresh")}),
         post(VERIFY, {"token": step(1, "refresh")}),
         post(BLACKLIST, {"refresh": step(0, "refresh")}))
    case("refresh_rotate_crafted_custom_claims", "rotate",
         post(REFRESH, {"refresh": jwt(R(username="alice"))}))
    case("refresh_rotate_no_blacklist_reuse_ok", "rotate_no_blacklist",
         login(),
         post(REFRESH, {"refresh": step(0, "refresh")}),
         post(REFRESH, {"refresh": step(0, "refresh")}),
         post(REFRESH, {"refresh": step(1, "refresh")}),
         post(VERIFY, {"token": step(0, "refresh")}))
    case("refresh_rotate_no_blacklist_blacklisted_token", "rotate_no_blacklist",
         post(REFRESH, {"refresh": blacklisted()}))
    # aud / iss
    AI = "aud_iss"
    case("obtain_aud_iss_ok", AI, login())
    case("sliding_obtain_aud_iss_ok", AI, post(SOBTAIN, ALICE))
    case("refresh_aud_iss_ok", AI, post(REFRESH, {"refresh": refresh()}))
    case("refresh_aud_iss_matching_crafted", AI, post(REFRESH, {"refresh": jwt(R(aud="you", iss="me"))}))
    case("refresh_aud_iss_aud_list", AI, post(REFRESH, {"refresh": jwt(R(aud=["other", "you"], iss="me"))}))
    case("refresh_aud_iss_wrong_aud", AI, post(REFRESH, {"refresh": jwt(R(aud="them", iss="me"))}))
    case("refresh_aud_iss_wrong_iss", AI, post(REFRESH, {"refresh": jwt(R(aud="you", iss="someone"))}))
    case("refresh_aud_iss_missing_aud", AI, post(REFRESH, {"refresh": jwt(R(iss="me"))}))
    case("refresh_aud_iss_missing_iss", AI, post(REFRESH, {"refresh": jwt(R(aud="you"))}))
    case("refresh_aud_iss_missing_both", AI, post(REFRESH, {"refresh": jwt(R())}))
    case("verify_aud_iss_ok", AI, post(VERIFY, {"token": access()}))
    case("verify_aud_iss_wrong_aud", AI, post(VERIFY, {"token": jwt(A(aud="them", iss="me"))}))
    case("me_aud_iss_ok", AI, get(ME, bearer(access())))
    case("me_aud_iss_missing_aud", AI, get(ME, bearer(jwt(A(iss="me")))))
    # leeway
    L = "leeway"
    case("refresh_leeway_expired_within", L, post(REFRESH, {"refresh": jwt(R(exp="$now-10", iat="$now-86410"))}))
    case("refresh_leeway_expired_beyond", L, post(REFRESH, {"refresh": jwt(R(exp="$now-60", iat="$now-86460"))}))
    case("refresh_leeway_iat_future_within", L, post(REFRESH, {"refresh": jwt(R(iat="$now+10"))}))
    case("refresh_leeway_iat_future_beyond", L, post(REFRESH, {"refresh": jwt(R(iat="$now+60"))}))
    case("refresh_leeway_nbf_future_within", L, post(REFRESH, {"refresh": jwt(R(nbf="$now+10"))}))
    case("refresh_leeway_nbf_future_beyond", L, post(REFRESH, {"refresh": jwt(R(nbf="$now+60"))}))
    case("verify_leeway_expired_within", L, post(VERIFY, {"token": jwt(A(exp="$now-10", iat="$now-310"))}))
    case("verify_leeway_expired_beyond", L, post(VERIFY, {"token": jwt(A(exp="$now-60", iat="$now-360"))}))
    case("me_leeway_expired_within", L, get(ME, bearer(jwt(A(exp="$now-10", iat="$now-310")))))
    case("me_leeway_expired_beyond", L, get(ME, bearer(jwt(A(exp="$now-60", iat="$now-360")))))
    case("sliding_refresh_leeway_exp_within", L,
         post(SREFRESH, {"token": jwt(S(exp="$now-10", iat="$now-310"))}))
    case("sliding_refresh_leeway_refresh_exp_within", L,
         post(SREFRESH, {"token": jwt(S(refresh_exp="$now-10"))}))
    case("sliding_refresh_leeway_refresh_exp_beyond", L,
         post(SREFRESH, {"token": jwt(S(refresh_exp="$now-60"))}))

    # ----------------------------------------------------------------------- verify (§1.3)
    case("verify_ok_access", D, post(VERIFY, {"token": access()}))
    case("verify_ok_refresh", D, post(VERIFY, {"token": refresh()}))
    case("verify_ok_sliding", D, post(VERIFY, {"token": sliding()}))
    case("verify_ok_form", D, post(VERIFY, "token=" + access(), ct=FORM))
    case("verify_ok_inactive_user", D, post(VERIFY, {"token": access("bob")}))
    case("verify_ok_unknown_user", D, post(VERIFY, {"token": jwt(A(user_id="99"))}))
    case("verify_ok_no_token_type", D, post(VERIFY, {"token": jwt(A(token_type=DROP))}))
    case("verify_ok_odd_token_type", D, post(VERIFY, {"token": jwt(A(token_type="bogus"))}))
    case("verify_ok_no_user_id", D, post(VERIFY, {"token": jwt(A(user_id=DROP))}))
    case("verify_blacklisted_default", D, post(VERIFY, {"token": blacklisted()}),
         note="default settings: the verify endpoint ignores the blacklist")
    case("verify_blacklisted_rotate", "rotate", post(VERIFY, {"token": blacklisted()}),
         note="BLACKLIST_AFTER_ROTATION=True: blacklist checked, 400 not 401")
    case("verify_blacklisted_rotate_no_blacklist", "rotate_no_blacklist", post(VERIFY, {"token": blacklisted()}))
    case("verify_expired", D, post(VERIFY, {"token": jwt(A(exp="$now-10", iat="$now-310"))}))
    case("verify_garbage", D, post(VERIFY, {"token": "garbage"}))
    case("verify_bad_signature", D, post(VERIFY, {"token": jwt(A(), key=OTHER_KEY)}))
    case("verify_alg_hs512", D, post(VERIFY, {"token": jwt(A(), alg="HS512")}))
    case("verify_no_exp", D, post(VERIFY, {"token": jwt(A(exp=DROP))}))
    case("verify_no_jti", D, post(VERIFY, {"token": jwt(A(jti=DROP))}))
    case("verify_no_jti_refresh", D, post(VERIFY, {"token": jwt(R(jti=DROP))}))
    case("verify_no_jti_rotate", "rotate", post(VERIFY, {"token": jwt(R(jti=DROP))}))
    case("verify_jti_integer", D, post(VERIFY, {"token": jwt(A(jti=7))}))
    case("verify_iat_in_future", D, post(VERIFY, {"token": jwt(A(iat="$now+3600"))}))
    case("verify_nbf_in_future", D, post(VERIFY, {"token": jwt(A(nbf="$now+3600"))}))
    case("verify_missing_field", D, post(VERIFY, "{}"))
    case("verify_blank_field", D, post(VERIFY, {"token": ""}))
    case("verify_null_field", D, post(VERIFY, {"token": None}))
    case("verify_wrong_field_name", D, post(VERIFY, {"refresh": access()}))
    case("verify_method_get", D, get(VERIFY))
    case("verify_options", D, req("OPTIONS", VERIFY))

    # -------------------------------------------------------------------- blacklist (§1.4)
    case("blacklist_ok", D, post(BLACKLIST, {"refresh": refresh()}))
    case("blacklist_ok_crafted_unrecorded", D, post(BLACKLIST, {"refresh": jwt(R())}))
    case("blacklist_ok_crafted_unknown_user", D, post(BLACKLIST, {"refresh": jwt(R(user_id="99"))}))
    case("blacklist_ok_no_user_id", D, post(BLACKLIST, {"refresh": jwt(R(user_id=DROP))}))
    case("blacklist_again", D,
         login(),
         post(BLACKLIST, {"refresh": step(0, "refresh")}),
         post(BLACKLIST, {"refresh": step(0, "refresh")}))
    case("blacklist_then_use", D,
         login(),
         post(BLACKLIST, {"refresh": step(0, "refresh")}),
         post(REFRESH, {"refresh": step(0, "refresh")}),
         post(VERIFY, {"token": step(0, "refresh")}),
         get(ME, bearer(step(0, "access"))),
         note="the paired access token keeps working after the refresh token is blacklisted")
    case("blacklist_placeholder_blacklisted", D, post(BLACKLIST, {"refresh": blacklisted()}))
    case("blacklist_access_token", D, post(BLACKLIST, {"refresh": access()}))
    case("blacklist_sliding_token", D, post(BLACKLIST, {"refresh": sliding()}))
    case("blacklist_expired", D, post(BLACKLIST, {"refresh": jwt(R(exp="$now-10", iat="$now-86410"))}))
    case("blacklist_garbage", D, post(BLACKLIST, {"refresh": "garbage"}))
    case("blacklist_bad_signature", D, post(BLACKLIST, {"refresh": jwt(R(), key=OTHER_KEY)}))
    case("blacklist_no_jti", D, post(BLACKLIST, {"refresh": jwt(R(jti=DROP))}),
         note="KeyError in check_blacklist: 500 in 5.5.1")
    case("blacklist_no_exp", D, post(BLACKLIST, {"refresh": jwt(R(exp=DROP))}))
    case("blacklist_inactive_user", D, post(BLACKLIST, {"refresh": refresh("bob")}))
    case("blacklist_missing_field", D, post(BLACKLIST, "{}"))
    case("blacklist_blank_field", D, post(BLACKLIST, {"refresh": ""}))
    case("blacklist_null_field", D, post(BLACKLIST, {"refresh": None}))
    case("blacklist_method_get", D, get(BLACKLIST))
    case("blacklist_options", D, req("OPTIONS", BLACKLIST))
    case("blacklist_rotate_then_refresh", "rotate",
         login(),
         post(BLACKLIST, {"refresh": step(0, "refresh")}),
         post(REFRESH, {"refresh": step(0, "refresh")}),
         post(VERIFY, {"token": step(0, "refresh")}))

    # ---------------------------------------------------------------- sliding refresh (§1.6)
    case("sliding_refresh_ok", D, post(SREFRESH, {"token": sliding()}))
    case("sliding_refresh_ok_chain", D,
         post(SOBTAIN, ALICE),
         post(SREFRESH, {"token": step(0, "token")}),
         post(SREFRESH, {"token": step(1, "token")}),
         post(SREFRESH, {"token": step(0, "token")}),
         get(ME, bearer(step(2, "token"))))
    case("sliding_refresh_ok_crafted", D, post(SREFRESH, {"token": jwt(S(username="alice"))}))
    case("sliding_refresh_expired_exp_valid_refresh_exp", D,
         post(SREFRESH, {"token": jwt(S(exp="$now-10", iat="$now-310", refresh_exp="$now+86000"))}),
         note="exp is checked when decoding, so refresh_exp cannot rescue an expired sliding token")
    case("sliding_refresh_refresh_exp_passed", D,
         post(SREFRESH, {"token": jwt(S(refresh_exp="$now-10"))}))
    case("sliding_refresh_no_refresh_exp", D, post(SREFRESH, {"token": jwt(S(refresh_exp=DROP))}))
    case("sliding_refresh_refresh_exp_string", D, post(SREFRESH, {"token": jwt(S(refresh_exp="soon"))}),
         note="datetime_from_epoch('soon') raises TypeError")
    case("sliding_refresh_no_exp", D, post(SREFRESH, {"token": jwt(S(exp=DROP))}))
    case("sliding_refresh_no_jti", D, post(SREFRESH, {"token": jwt(S(jti=DROP))}))
    case("sliding_refresh_access_token", D, post(SREFRESH, {"token": access()}))
    case("sliding_refresh_refresh_token", D, post(SREFRESH, {"token": refresh()}))
    case("sliding_refresh_garbage", D, post(SREFRESH, {"token": "garbage"}))
    case("sliding_refresh_bad_signature", D, post(SREFRESH, {"token": jwt(S(), key=OTHER_KEY)}))
    case("sliding_refresh_inactive_user", D, post(SREFRESH, {"token": sliding("bob")}),
         note="5.5.1 does no user checks on sliding refresh")
    case("sliding_refresh_unknown_user", D, post(SREFRESH, {"token": jwt(S(user_id="99"))}))
    case("sliding_refresh_missing_field", D, post(SREFRESH, "{}"))
    case("sliding_refresh_blank_field", D, post(SREFRESH, {"token": ""}))
    case("sliding_refresh_null_field", D, post(SREFRESH, {"token": None}))
    case("sliding_refresh_wrong_field_name", D, post(SREFRESH, {"refresh": sliding()}))
    case("sliding_refresh_method_get", D, get(SREFRESH))
    case("sliding_refresh_options", D, req("OPTIONS", SREFRESH))

    # -------------------------------------------------------------------- users/me (§6)
    case("me_no_header", D, get(ME))
    case("me_ok", D, get(ME, bearer(access())))
    case("me_ok_carol_empty_email", D, get(ME, bearer(access("carol"))))
    case("me_ok_after_login", D, login(), get(ME, bearer(step(0, "access"))))
    case("me_ok_crafted", D, get(ME, bearer(jwt(A()))))
    case("me_ok_extra_spaces", D, get(ME, {"Authorization": "Bearer    " + access() + "   "}))
    case("me_ok_tab_separator", D, get(ME, {"Authorization": "Bearer\t" + access()}))
    case("me_ok_leading_space", D, get(ME, {"Authorization": " Bearer " + access()}))
    case("me_user_id_int", D, get(ME, bearer(jwt(A(user_id=1)))))
    case("me_bearer_lowercase", D, get(ME, bearer(access(), scheme="bearer")))
    case("me_bearer_uppercase", D, get(ME, bearer(access(), scheme="BEARER")))
    case("me_jwt_scheme_default", D, get(ME, bearer(access(), scheme="JWT")))
    case("me_basic_scheme", D, get(ME, {"Authorization": "Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQtMQ=="}))
    case("me_token_without_scheme", D, get(ME, {"Authorization": access()}))
    case("me_bearer_alone", D, get(ME, {"Authorization": "Bearer"}))
    case("me_bearer_alone_trailing_space", D, get(ME, {"Authorization": "Bearer "}))
    case("me_bearer_two_values", D, get(ME, {"Authorization": "Bearer a b"}))
    case("me_bearer_token_and_junk", D, get(ME, {"Authorization": "Bearer " + access() + " x"}))
    case("me_empty_header", D, get(ME, {"Authorization": ""}))
    case("me_whitespace_header", D, get(ME, {"Authorization": "   "}))
    case("me_refresh_token", D, get(ME, bearer(refresh())))
    case("me_sliding_token_default", D, get(ME, bearer(sliding())))
    case("me_expired_access", D, get(ME, bearer(jwt(A(exp="$now-10", iat="$now-310")))))
    case("me_garbage", D, get(ME, bearer("garbage")))
    case("me_bad_signature", D, get(ME, bearer(jwt(A(), key=OTHER_KEY))))
    case("me_alg_hs384", D, get(ME, bearer(jwt(A(), alg="HS384"))))
    case("me_no_exp", D, get(ME, bearer(jwt(A(exp=DROP)))))
    case("me_no_jti", D, get(ME, bearer(jwt(A(jti=DROP)))))
    case("me_no_token_type", D, get(ME, bearer(jwt(A(token_type=DROP)))))
    case("me_iat_in_future", D, get(ME, bearer(jwt(A(iat="$now+3600")))))
    case("me_nbf_in_future", D, get(ME, bearer(jwt(A(nbf="$now+3600")))))
    case("me_no_user_id", D, get(ME, bearer(jwt(A(user_id=DROP)))))
    case("me_user_not_found", D, get(ME, bearer(jwt(A(user_id="99")))))
    case("me_user_id_null", D, get(ME, bearer(jwt(A(user_id=None)))))
    case("me_user_inactive", D, get(ME, bearer(access("bob"))))
    case("me_user_id_abc", D, get(ME, bearer(jwt(A(user_id="abc")))),
         note="ValueError on the int pk lookup: 500 in 5.5.1")
    case("me_post_authenticated", D, post(ME, "{}", headers=bearer(access())))
    case("me_post_unauthenticated", D, post(ME, "{}"))
    case("me_post_bad_token", D, post(ME, "{}", headers=bearer("garbage")))
    case("me_put_authenticated", D, req("PUT", ME, "{}", {"Content-Type": JSON, **bearer(access())}))
    case("me_head_authenticated", D, req("HEAD", ME, "", bearer(access())))
    case("me_options_unauthenticated", D, req("OPTIONS", ME))
    case("me_options_authenticated", D, req("OPTIONS", ME, "", bearer(access())))
    case("me_custom_header_ignored_in_default", D, get(ME, {"X-Access-Token": "Bearer " + access()}))
    # header_types
    HT = "header_types"
    case("me_header_types_jwt_ok", HT, get(ME, bearer(access(), scheme="JWT")))
    case("me_header_types_bearer_ok", HT, get(ME, bearer(access())))
    case("me_header_types_jwt_garbage", HT, get(ME, {"Authorization": "JWT x"}))
    case("me_header_types_jwt_alone", HT, get(ME, {"Authorization": "JWT"}))
    case("me_header_types_lowercase_jwt", HT, get(ME, bearer(access(), scheme="jwt")))
    case("me_header_types_no_header", HT, get(ME))
    case("obtain_header_types_wrong_password", HT, login("alice", "nope"))
    # sliding_auth
    SA = "sliding_auth"
    case("me_sliding_auth_sliding_ok", SA, get(ME, bearer(sliding())))
    case("me_sliding_auth_access_ok", SA, get(ME, bearer(access())))
    case("me_sliding_auth_garbage", SA, get(ME, bearer("garbage")))
    case("me_sliding_auth_expired_sliding", SA,
         get(ME, bearer(jwt(S(exp="$now-10", iat="$now-310")))))
    case("me_sliding_auth_refresh_token", SA, get(ME, bearer(refresh())))
    case("me_sliding_auth_sliding_no_jti", SA, get(ME, bearer(jwt(S(jti=DROP)))),
         note="SlidingToken's blacklist check reads payload['jti'] before the 'no id' check")
    case("me_sliding_auth_sliding_refreshed", SA,
         post(SOBTAIN, ALICE),
         post(SREFRESH, {"token": step(0, "token")}),
         get(ME, bearer(step(1, "token"))))
    # custom_header
    CH = "custom_header"
    case("me_custom_header_ok", CH, get(ME, {"X-Access-Token": "Bearer " + access()}))
    case("me_custom_header_authorization_ignored", CH, get(ME, bearer(access())))
    case("me_custom_header_garbage", CH, get(ME, {"X-Access-Token": "Bearer garbage"}))
    case("me_custom_header_bare_token", CH, get(ME, {"X-Access-Token": access()}))
    case("me_custom_header_no_header", CH, get(ME))
    # revoke
    RV = "revoke"
    case("obtain_revoke_ok", RV, login())
    case("sliding_obtain_revoke_ok", RV, post(SOBTAIN, ALICE))
    case("me_revoke_ok", RV, get(ME, bearer(access())))
    case("me_revoke_no_hash_claim", RV, get(ME, bearer(jwt(A()))))
    case("me_revoke_wrong_hash_claim", RV,
         get(ME, bearer(jwt(A(hash_password="00000000000000000000000000000000")))))
    case("me_revoke_password_changed", RV,
         login(),
         get(ME, bearer(step(0, "access"))),
         {"action": "set_password", "username": "alice", "password": "alice-password-new"},
         get(ME, bearer(step(0, "access"))),
         post(REFRESH, {"refresh": step(0, "refresh")}),
         get(ME, bearer(step(4, "access"))),
         post(VERIFY, {"token": step(0, "access")}),
         login("alice", "alice-password-1"),
         login("alice", "alice-password-new"),
         get(ME, bearer(step(8, "access"))),
         note="5.5.1: refresh does not check hash_password; the new access token fails at use")
    case("me_revoke_fresh_tokens_after_set_password", RV,
         {"action": "set_password", "username": "alice", "password": "alice-password-new"},
         get(ME, bearer(access())),
         post(REFRESH, {"refresh": refresh()}),
         get(ME, bearer(step(2, "access"))),
         note="placeholders made after the action carry the new hash_password")
    case("sliding_refresh_revoke_after_set_password", RV,
         post(SOBTAIN, ALICE),
         {"action": "set_password", "username": "alice", "password": "alice-password-new"},
         post(SREFRESH, {"token": step(0, "token")}),
         post(VERIFY, {"token": step(2, "token")}),
         note="5.5.1: sliding refresh performs no user or hash_password check")

    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return cases


CASES = build_cases()

# ----------------------------------------------------------------------------------------
# Placeholder expansion (shared vocabulary with the Rust replayer; see README.md)
# ----------------------------------------------------------------------------------------

NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+")
NOW_RE = re.compile(r"^\$now(?:([+-])(\d+))?$")
STEP_RE = re.compile(r"^step(\d+)\.body\.([A-Za-z0-9_]+)$")
JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")


def subst_claims(v, now):
    if isinstance(v, dict):
        return {k: subst_claims(x, now) for k, x in v.items()}
    if isinstance(v, list):
        return [subst_claims(x, now) for x in v]
    if isinstance(v, str):
        if v == "$jti":
            return secrets.token_hex(16)
        m = NOW_RE.match(v)
        if m:
            n = int(m.group(2) or 0)
            return now + n if m.group(1) != "-" else now - n
    return v


class Expander:
    def __init__(self, ctx):
        self.ctx = ctx  # provides now(), user_token(kind, username), step_value(i, field)

    def expand(self, text):
        out = []
        i = 0
        dec = json.JSONDecoder()
        while True:
            j = text.find("{{", i)
            if j < 0:
                out.append(text[i:])
                return "".join(out)
            out.append(text[i:j])
            k = j + 2
            m = NAME_RE.match(text, k)
            if not m:
                raise ValueError("bad placeholder at %d in %r" % (j, text))
            name = m.group(0)
            k = m.end()
            if name in ("jwt", "jwt_key", "jwt_alg", "jwt_kid"):
                if text[k] != ":":
                    raise ValueError("expected ':' after " + name)
                k += 1
                key, alg, kid = SIGNING_KEY, "HS256", None
                if name != "jwt":
                    e = text.index(":", k)
                    arg = text[k:e]
                    k = e + 1
                    if name == "jwt_key":
                        key = arg
                    elif name == "jwt_kid":
                        kid = arg
                    else:
                        alg = arg
                tmpl, k = dec.raw_decode(text, k)
                if not text.startswith("}}", k):
                    raise ValueError("expected '}}' after the claims of " + name)
                k += 2
                out.append(self.ctx.make_jwt(subst_claims(tmpl, self.ctx.now()), key, alg, kid))
            elif name in ("access", "refresh", "sliding", "blacklisted_refresh"):
                e = text.index("}}", k)
                if text[k] != ":":
                    raise ValueError("expected ':' after " + name)
                out.append(self.ctx.user_token(name, text[k + 1:e]))
                k = e + 2
            else:
                sm = STEP_RE.match(name)
                if not sm or not text.startswith("}}", k):
                    raise ValueError("unknown placeholder %r" % name)
                out.append(self.ctx.step_value(int(sm.group(1)), sm.group(2)))
                k += 2
            i = k


# ----------------------------------------------------------------------------------------
# Response normalisation
# ----------------------------------------------------------------------------------------

def b64url_json(seg):
    raw = base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))
    return json.loads(raw)


TIME_CLAIMS = ("exp", "iat", "nbf", "refresh_exp")


def describe_token(tok):
    h, p, _sig = tok.split(".")
    header = b64url_json(h)
    payload = b64url_json(p)
    norm = {}
    for k, v in payload.items():
        if k in TIME_CLAIMS and isinstance(v, int) and not isinstance(v, bool):
            norm[k] = "<int>"
        elif k == "jti" and isinstance(v, str) and re.fullmatch(r"[0-9a-f]{32}", v):
            norm[k] = "<jti>"
        elif k == "hash_password" and isinstance(v, str) and re.fullmatch(r"[0-9A-F]{32}", v):
            norm[k] = "<hash_password>"
        else:
            norm[k] = v
    lifetime = None
    if isinstance(payload.get("exp"), int) and isinstance(payload.get("iat"), int):
        lifetime = payload["exp"] - payload["iat"]
    return {"header": header, "claim_order": list(payload.keys()), "lifetime": lifetime,
            "claims": norm}


# ----------------------------------------------------------------------------------------
# Worker: one Django process per profile
# ----------------------------------------------------------------------------------------

def align_to_second():
    """Keep each step inside one wall-clock second.

    simplejwt computes exp and iat from separate clock reads (e.g. an access token made
    from a refresh token takes exp from the refresh token's clock read and iat from its
    own), so a step that straddles a second boundary could record lifetime 299 instead of
    300.  Steps take a few milliseconds; starting them early in a second avoids that.
    """
    frac = time.time() % 1.0
    if frac > 0.7:
        time.sleep(1.0 - frac + 0.01)


def run_worker(profile, out_path, only=None):
    import logging
    import types
    import warnings

    # PyJWT warns that the 51-byte key is short for HS384/HS512; irrelevant here.
    warnings.filterwarnings("ignore", module="jwt")

    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        SECRET_KEY="compat-django-secret-key-not-used-for-jwt",
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "rest_framework",
            "rest_framework_simplejwt",
            "rest_framework_simplejwt.token_blacklist",
        ],
        MIDDLEWARE=MIDDLEWARE,
        ROOT_URLCONF="compat_urls",
        USE_TZ=True,
        TIME_ZONE="UTC",
        LANGUAGE_CODE="en-us",
        PASSWORD_HASHERS=[PASSWORD_HASHER],
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": [
                "rest_framework_simplejwt.authentication.JWTAuthentication",
            ],
        },
        SIMPLE_JWT=simple_jwt_settings(profile),
    )
    django.setup()
    for name in ("django", "django.request", "rest_framework_simplejwt"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    import jwt as pyjwt
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command
    from django.test import Client
    from django.test.client import FakePayload
    from django.urls import path
    from rest_framework.permissions import IsAuthenticated
    from rest_framework.response import Response
    from rest_framework.views import APIView
    from rest_framework_simplejwt.token_blacklist.models import (
        BlacklistedToken,
        OutstandingToken,
    )
    from rest_framework_simplejwt.tokens import AccessToken, RefreshToken, SlidingToken
    from rest_framework_simplejwt.utils import get_md5_hash_password
    from rest_framework_simplejwt.views import (
        TokenBlacklistView,
        TokenObtainPairView,
        TokenObtainSlidingView,
        TokenRefreshSlidingView,
        TokenRefreshView,
        TokenVerifyView,
    )

    class MeView(APIView):
        permission_classes = [IsAuthenticated]

        def get(self, request):
            u = request.user
            return Response({"id": u.id, "username": u.username, "email": u.email})

    urls = types.ModuleType("compat_urls")
    urls.urlpatterns = [
        path("api/token/", TokenObtainPairView.as_view()),
        path("api/token/refresh/", TokenRefreshView.as_view()),
        path("api/token/verify/", TokenVerifyView.as_view()),
        path("api/token/blacklist/", TokenBlacklistView.as_view()),
        path("api/token/sliding/", TokenObtainSlidingView.as_view()),
        path("api/token/sliding/refresh/", TokenRefreshSlidingView.as_view()),
        path("api/users/me/", MeView.as_view()),
    ]
    sys.modules["compat_urls"] = urls

    call_command("migrate", verbosity=0, interactive=False)
    User = get_user_model()

    def reset_world():
        BlacklistedToken.objects.all().delete()
        OutstandingToken.objects.all().delete()
        User.objects.all().delete()
        for u in USERS:
            User.objects.create(
                id=u["id"], username=u["username"], email=u["email"],
                is_active=u["is_active"], is_staff=u["is_staff"],
                password=make_password(u["password"], salt=user_salt(u["username"])),
            )

    class Ctx:
        def __init__(self):
            self.bodies = {}

        def now(self):
            return int(time.time())

        def make_jwt(self, payload, key, alg, kid=None):
            headers = {"kid": kid} if kid is not None else None
            return pyjwt.encode(payload, key, algorithm=alg, headers=headers)

        def user_token(self, kind, username):
            user = User.objects.get(username=username)
            if kind == "access":
                return str(AccessToken.for_user(user))
            if kind == "refresh":
                return str(RefreshToken.for_user(user))
            if kind == "sliding":
                return str(SlidingToken.for_user(user))
            t = RefreshToken.for_user(user)
            t.blacklist()
            return str(t)

        def step_value(self, i, field):
            return self.bodies[i][field]

    def run_action(a):
        user = User.objects.get(username=a["username"])
        if a["action"] == "set_password":
            user.password = make_password(a["password"], salt=user_salt(a["username"]))
            user.save()
        elif a["action"] == "deactivate":
            user.is_active = False
            user.save()
        elif a["action"] == "delete_user":
            user.delete()
        else:
            raise ValueError("unknown action %r" % a["action"])

    def send(client, r, exp):
        align_to_second()
        headers = {k: exp.expand(v) for k, v in r["headers"].items()}
        data = exp.expand(r["body"]).encode("utf-8")
        env = {
            "REQUEST_METHOD": r["method"],
            "PATH_INFO": r["path"],
            "QUERY_STRING": "",
            "CONTENT_LENGTH": str(len(data)),
            "wsgi.input": FakePayload(data),
        }
        for k, v in headers.items():
            wsgi = k.upper().replace("-", "_")
            if wsgi in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                env[wsgi] = v
            else:
                env["HTTP_" + wsgi] = v
        return client.request(**env)

    def record_response(resp):
        text = resp.content.decode("utf-8")
        ctype = resp.headers.get("Content-Type")
        out = {
            "status": resp.status_code,
            "headers": {h: resp.headers.get(h) for h in
                        ("Content-Type", "WWW-Authenticate", "Allow", "Vary")},
        }
        parsed = None
        if resp.status_code == 500:
            out["body"] = "<html 500>"
        else:
            out["body"] = JWT_RE.sub("<JWT>", text)
            if ctype and ctype.startswith("application/json") and text:
                parsed = json.loads(text)
                tokens = {}
                if isinstance(parsed, dict):
                    for k, v in parsed.items():
                        if isinstance(v, str) and JWT_RE.fullmatch(v):
                            tokens[k] = describe_token(v)
                if tokens:
                    out["tokens"] = tokens
        return out, parsed

    results = {}
    for c in CASES:
        if c["profile"] != profile or (only and c["name"] not in only):
            continue
        reset_world()
        client = Client(raise_request_exception=False)
        ctx = Ctx()
        exp = Expander(ctx)
        steps_out = []
        for i, s in enumerate(c["steps"]):
            if "action" in s:
                run_action(s)
                steps_out.append(s)
                continue
            resp = send(client, s["request"], exp)
            rec, parsed = record_response(resp)
            ctx.bodies[i] = parsed if isinstance(parsed, dict) else {}
            steps_out.append({"request": s["request"], "response": rec})
        results[c["name"]] = steps_out

    versions = {}
    from importlib.metadata import version
    for key, dist in (("simplejwt", "djangorestframework-simplejwt"), ("django", "Django"),
                      ("drf", "djangorestframework"), ("pyjwt", "PyJWT")):
        versions[key] = version(dist)
    world_users = []
    for u in USERS:
        hashed = make_password(u["password"], salt=user_salt(u["username"]))
        world_users.append(dict(u, password_hash=hashed,
                                hash_password_claim=get_md5_hash_password(hashed)))
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump({"versions": versions, "users": world_users, "results": results}, f)


# ----------------------------------------------------------------------------------------
# Parent: run every profile, assemble the fixture
# ----------------------------------------------------------------------------------------

def record_all(only=None):
    profiles = [p for p in PROFILES if any(c["profile"] == p and (not only or c["name"] in only)
                                           for c in CASES)]
    results, versions, users = {}, None, None
    with tempfile.TemporaryDirectory() as tmp:
        for p in profiles:
            out = os.path.join(tmp, p + ".json")
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", p, "--out", out]
            for n in only or ():
                cmd += ["--only", n]
            subprocess.run(cmd, check=True)
            with open(out, encoding="utf-8") as f:
                part = json.load(f)
            results.update(part["results"])
            versions = versions or part["versions"]
            users = users or part["users"]
    versions = dict(versions or {})
    versions["client"] = "django.test.Client"
    cases = []
    for c in CASES:
        if c["name"] not in results:
            continue
        out = {"name": c["name"], "profile": c["profile"]}
        if "note" in c:
            out["note"] = c["note"]
        out["steps"] = results[c["name"]]
        cases.append(out)
    return {
        "recorded_with": dict(
            versions,
            python="%d.%d" % sys.version_info[:2],
            middleware=MIDDLEWARE,
            password_hashers=[PASSWORD_HASHER],
            database="sqlite3 :memory:",
            use_tz=True,
        ),
        "world": {
            "signing_key": SIGNING_KEY,
            "algorithm": "HS256",
            "other_key_used_in_cases": OTHER_KEY,
            "users": users,
            "urls": {"obtain_pair": OBTAIN, "refresh": REFRESH, "verify": VERIFY,
                     "blacklist": BLACKLIST, "obtain_sliding": SOBTAIN,
                     "refresh_sliding": SREFRESH, "me": ME},
        },
        "profiles": PROFILES,
        "cases": cases,
    }


def dumps_fixture(doc):
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--only", action="append", help="record only these case names")
    ap.add_argument("--print", action="store_true", help="print instead of writing the fixture")
    ap.add_argument("--check", action="store_true",
                    help="regenerate and compare with the committed fixture (exit 1 on difference)")
    args = ap.parse_args()
    if args.worker:
        run_worker(args.worker, args.out, set(args.only or ()))
        return 0
    doc = record_all(set(args.only or ()))
    text = dumps_fixture(doc)
    if args.print or args.only:
        sys.stdout.write(text)
        return 0
    if args.check:
        with open(FIXTURE, encoding="utf-8") as f:
            old = f.read()
        if old != text:
            import difflib
            sys.stdout.writelines(difflib.unified_diff(
                old.splitlines(True), text.splitlines(True), FIXTURE, "regenerated"))
            return 1
        print("fixture is up to date (%d cases)" % len(doc["cases"]))
        return 0
    with open(FIXTURE, "w", encoding="utf-8") as f:
        f.write(text)
    print("wrote %s (%d cases)" % (FIXTURE, len(doc["cases"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
