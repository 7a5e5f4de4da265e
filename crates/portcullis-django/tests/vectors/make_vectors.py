#!/usr/bin/env python3
"""Generate Django password-hash test vectors with real Django.

Every vector is produced by Django's own hashers (or, where Django cannot emit
a form at all, by the library Django delegates to) and then checked with
Django's own ``check_password``: the ``expected`` field is what Django says,
never what we think it should say.

Usage (costs are deliberately low so the Rust tests stay fast):

    python3 -m venv /tmp/dj52 && /tmp/dj52/bin/pip install "Django==5.2.*" argon2-cffi bcrypt
    /tmp/dj52/bin/python tests/vectors/make_vectors.py      # writes django-5.2.json

    python3 -m venv /tmp/dj42 && /tmp/dj42/bin/pip install "Django==4.2.*" argon2-cffi bcrypt
    /tmp/dj42/bin/python tests/vectors/make_vectors.py      # writes django-4.2.json

Django 5.1 removed SHA1PasswordHasher, UnsaltedSHA1PasswordHasher and
UnsaltedMD5PasswordHasher, and 5.0 removed CryptPasswordHasher, so the legacy
formats come from Django 4.2 LTS (the last release that ships them). Rows in
those formats can still sit in a 5.2 database, which is why the verifier keeps
them. The output is deterministic except for bcrypt, whose salt Django always
draws at random.
"""

import json
import os
import sys
import warnings

import django
from django.conf import settings

settings.configure(
    # Every hasher this Django version knows, so check_password can identify
    # every vector. Order does not matter for verification.
    PASSWORD_HASHERS=[
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
        "django.contrib.auth.hashers.Argon2PasswordHasher",
        "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
        "django.contrib.auth.hashers.BCryptPasswordHasher",
        "django.contrib.auth.hashers.ScryptPasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    + (
        [
            "django.contrib.auth.hashers.SHA1PasswordHasher",
            "django.contrib.auth.hashers.UnsaltedSHA1PasswordHasher",
            "django.contrib.auth.hashers.UnsaltedMD5PasswordHasher",
            "django.contrib.auth.hashers.CryptPasswordHasher",
        ]
        if django.VERSION < (5, 0)
        else []
    ),
)
django.setup()
warnings.simplefilter("ignore")

import argon2  # noqa: E402
import bcrypt  # noqa: E402
from django.contrib.auth import hashers as h  # noqa: E402

SALT = "seasalt1234567890abcde"  # 22 chars, Django >= 3.2 style
OLD_SALT = "Ab3dE6gH9jK1"  # 12 chars, Django < 3.2 style

PASSWORDS = [
    "password",
    "correct horse battery staple",
    "",
    "  leading and trailing spaces  ",
    "é",
    "pässwörd-naïve",
    "🔑🦀 emoji",
    "日本語のパスワード",
    "dollar$sign$in$it",
    "x" * 100,  # longer than bcrypt's 72-byte window
]


def wrong(pw):
    """A different password that differs only slightly."""
    return pw + "!" if pw else " "


# ---- low-cost subclasses of Django's own hashers -------------------------


class FastPBKDF2(h.PBKDF2PasswordHasher):
    iterations = 1000


class FastPBKDF2SHA1(h.PBKDF2SHA1PasswordHasher):
    iterations = 1000


class OneIterPBKDF2(h.PBKDF2PasswordHasher):
    iterations = 1


class FastArgon2id(h.Argon2PasswordHasher):
    time_cost = 1
    memory_cost = 64
    parallelism = 2


class FastArgon2i(h.Argon2PasswordHasher):
    """Django < 3.2 emitted argon2i with 16-byte hashes (argon2-cffi < 21.2)."""

    time_cost = 2
    memory_cost = 64
    parallelism = 2

    def params(self):
        return argon2.Parameters(
            type=argon2.low_level.Type.I,
            version=argon2.low_level.ARGON2_VERSION,
            salt_len=argon2.DEFAULT_RANDOM_SALT_LENGTH,
            hash_len=16,
            time_cost=self.time_cost,
            memory_cost=self.memory_cost,
            parallelism=self.parallelism,
        )


class FastArgon2d(FastArgon2id):
    """argon2-cffi (and so Django's verify) also accepts argon2d strings."""

    def params(self):
        p = super().params()
        return argon2.Parameters(
            type=argon2.low_level.Type.D,
            version=p.version,
            salt_len=p.salt_len,
            hash_len=p.hash_len,
            time_cost=p.time_cost,
            memory_cost=p.memory_cost,
            parallelism=p.parallelism,
        )


class FastBCryptSHA256(h.BCryptSHA256PasswordHasher):
    rounds = 4


class FastBCryptSHA256_2a(FastBCryptSHA256):
    """Hashes made by older bcrypt libraries carry the $2a$ prefix."""

    def salt(self):
        return bcrypt.gensalt(self.rounds, prefix=b"2a")


class FastBCrypt(h.BCryptPasswordHasher):
    rounds = 4


class FastBCrypt_2a(FastBCrypt):
    def salt(self):
        return bcrypt.gensalt(self.rounds, prefix=b"2a")


class FastScrypt(h.ScryptPasswordHasher):
    work_factor = 2**10
    block_size = 8
    parallelism = 2


class FastScryptP1(h.ScryptPasswordHasher):
    """Django 4.0-5.0 default parallelism was 1."""

    work_factor = 2**8
    block_size = 4
    parallelism = 1


vectors = []


def add(note, password, encoded):
    """Record the right password and a wrong one, as Django judges them."""
    for pw in (password, wrong(password)):
        vectors.append(
            {
                "note": note,
                "password": pw,
                "encoded": encoded,
                "expected": h.check_password(pw, encoded),
            }
        )


def make(note, hasher, password, salt=None):
    try:
        encoded = h.make_password(password, salt, hasher)
    except ValueError as exc:
        # bcrypt >= 5 refuses passwords over 72 bytes; Django surfaces that.
        print(f"skip {note} {password[:12]!r}: {exc}", file=sys.stderr)
        return
    add(note, password, encoded)


def argon2_without_version(password, salt):
    """Django never omits `v=`; argon2-cffi's low-level API with version 0x10
    prints `v=16`, and libargon2 reads a missing `v=` as 0x10, so strip it.
    check_password below then confirms that Django accepts the result."""
    raw = argon2.low_level.hash_secret(
        password.encode(),
        salt.encode(),
        time_cost=2,
        memory_cost=64,
        parallelism=1,
        hash_len=16,
        type=argon2.low_level.Type.I,
        version=0x10,
    ).decode("ascii")
    assert "$v=16$" in raw, raw
    return "argon2" + raw.replace("$v=16$", "$", 1)


def argon2_v16(password, salt):
    raw = argon2.low_level.hash_secret(
        password.encode(),
        salt.encode(),
        time_cost=1,
        memory_cost=32,
        parallelism=1,
        hash_len=32,
        type=argon2.low_level.Type.ID,
        version=0x10,
    ).decode("ascii")
    return "argon2" + raw


major_minor = "%d.%d" % django.VERSION[:2]

for pw in PASSWORDS:
    if django.VERSION >= (5, 0):
        make("pbkdf2_sha256 i=1000", FastPBKDF2(), pw, SALT)
        make("pbkdf2_sha256 12-char salt", FastPBKDF2(), pw, OLD_SALT)
        make("pbkdf2_sha1 i=1000", FastPBKDF2SHA1(), pw, SALT)
        make("argon2id m=64 t=1 p=2", FastArgon2id(), pw, SALT)
        make("argon2i 16-byte hash", FastArgon2i(), pw, SALT)
        make("argon2d", FastArgon2d(), pw, SALT)
        add("argon2i without v= (argon2-cffi low level)", pw, argon2_without_version(pw, SALT))
        add("argon2id v=16 (argon2-cffi low level)", pw, argon2_v16(pw, SALT))
        make("bcrypt_sha256 $2b$", FastBCryptSHA256(), pw)
        make("bcrypt_sha256 $2a$", FastBCryptSHA256_2a(), pw)
        make("bcrypt $2b$", FastBCrypt(), pw)
        make("bcrypt $2a$", FastBCrypt_2a(), pw)
        make("scrypt N=2^10 r=8 p=2", FastScrypt(), pw, SALT)
        make("scrypt N=2^8 r=4 p=1", FastScryptP1(), pw, OLD_SALT)
        make("md5 salted", h.MD5PasswordHasher(), pw, SALT)
    else:
        make("sha1 salted", h.SHA1PasswordHasher(), pw, SALT)
        make("sha1 salted 5-char salt", h.SHA1PasswordHasher(), pw, "a1b2c")
        make("unsalted_sha1", h.UnsaltedSHA1PasswordHasher(), pw)
        make("unsalted_md5 (bare hex)", h.UnsaltedMD5PasswordHasher(), pw)
        bare = h.make_password(pw, "", h.UnsaltedMD5PasswordHasher())
        add("unsalted_md5 (md5$$ form)", pw, "md5$$" + bare)
        # Django's CryptPasswordHasher (removed in 5.0) stores crypt(3) output; with a
        # two-character salt that is DES. The Rust crate refuses these as Unsupported.
        if pw and "\0" not in pw:
            make("crypt (DES)", h.CryptPasswordHasher(), pw, "ab")

if django.VERSION >= (5, 0):
    # Unusable passwords never match, not even the empty password.
    for _ in range(2):
        unusable = h.make_password(None)
        for pw in ("", "password"):
            vectors.append({"note": "unusable", "password": pw, "encoded": unusable,
                            "expected": h.check_password(pw, unusable)})

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"django-{major_minor}.json")
doc = {
    "generator": "tests/vectors/make_vectors.py",
    "django": django.get_version(),
    "argon2_cffi": argon2.__version__ if hasattr(argon2, "__version__") else "unknown",
    "bcrypt": bcrypt.__version__,
    "python": sys.version.split()[0],
    "vectors": vectors,
}
with open(out, "w", encoding="utf-8") as f:
    json.dump(doc, f, ensure_ascii=False, indent=1)
    f.write("\n")
print(f"wrote {len(vectors)} vectors to {out}", file=sys.stderr)
