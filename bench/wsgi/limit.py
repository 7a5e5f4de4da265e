"""The in-Python limit of the Django rows of bench/run: the same view called
in a loop with a prepared environ, no server at all. Prints requests per
second of this one process (bench/run runs one per core and adds them up).

    python limit.py SECONDS PATH
"""
import io
import os
import sys
import time

# The project is the working directory, as for the servers.
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
from mysite.wsgi import application  # noqa: E402

seconds = float(sys.argv[1])
path = sys.argv[2]
base = {
    "REQUEST_METHOD": "GET",
    "SCRIPT_NAME": "",
    "PATH_INFO": path,
    "QUERY_STRING": "",
    "SERVER_NAME": "127.0.0.1",
    "SERVER_PORT": "8000",
    "SERVER_PROTOCOL": "HTTP/1.1",
    "REMOTE_ADDR": "127.0.0.1",
    "HTTP_HOST": "127.0.0.1:8000",
    "HTTP_USER_AGENT": "wrk",
    "wsgi.version": (1, 0),
    "wsgi.url_scheme": "http",
    "wsgi.errors": sys.stderr,
    "wsgi.multithread": False,
    "wsgi.multiprocess": True,
    "wsgi.run_once": False,
}


def start_response(status, headers, exc_info=None):
    assert status.startswith("200"), status
    return None


def one():
    environ = dict(base)
    environ["wsgi.input"] = io.BytesIO(b"")
    body = application(environ, start_response)
    try:
        b"".join(body)
    finally:
        body.close()


for _ in range(200):
    one()
n = 0
end = time.perf_counter() + seconds
while time.perf_counter() < end:
    for _ in range(50):
        one()
    n += 50
print(f"{n / seconds:.0f}")
