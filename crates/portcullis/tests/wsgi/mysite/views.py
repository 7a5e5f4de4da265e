import ctypes
import hashlib
import os
import signal
import sys
import time
from pathlib import Path

from django.http import FileResponse, JsonResponse, StreamingHttpResponse
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework_simplejwt.authentication import JWTAuthentication


@api_view(["GET"])
def me(request):
    """The user portcullis authenticated, as Django sees it."""
    return Response({"username": request.user.username, "auth": str(request.auth)})


@api_view(["GET"])
@permission_classes([AllowAny])
def hello(request):
    """The benchmark's JSON view (DRF, anonymous)."""
    return Response({"message": "hello", "user": request.user.username if request.user else None})


def stream(request):
    def chunks():
        for i in range(5):
            yield f"chunk {i}\n".encode()

    return StreamingHttpResponse(chunks(), content_type="text/plain")


def huge(request):
    """200 MiB made as fast as Python can, for a client that reads slowly."""
    block = bytes(range(256)) * 4096

    return StreamingHttpResponse((block for _ in range(200)), content_type="application/octet-stream")


def download(request):
    path = Path(__file__).resolve().parent.parent / "download.bin"
    return FileResponse(open(path, "rb"), as_attachment=True, filename="download.bin")


@api_view(["POST"])
@permission_classes([AllowAny])
def upload(request):
    f = request.FILES["file"]
    digest = hashlib.sha256()
    for chunk in f.chunks():
        digest.update(chunk)
    return Response({"name": f.name, "size": f.size, "sha256": digest.hexdigest(), "note": request.data.get("note")})


def where(request):
    """What the interpreter and the request look like from inside."""
    return JsonResponse({
        "prefix": sys.prefix,
        "script_name": request.META["SCRIPT_NAME"],
        "path": request.path,
        "path_info": request.path_info,
        "scheme": request.scheme,
        "remote_addr": request.META.get("REMOTE_ADDR"),
        "remote_user": request.META.get("REMOTE_USER"),
        "http_remote_user": request.META.get("HTTP_REMOTE_USER"),
        "identity_header": request.META.get("HTTP_X_PORTCULLIS_USERNAME"),
        "settings_module": os.environ.get("DJANGO_SETTINGS_MODULE"),
        "django_file": __import__("django").__file__,
    })


def crash(request):
    raise RuntimeError("a secret in the traceback")


@api_view(["GET"])
@authentication_classes([JWTAuthentication])
def jwt_me(request):
    """An app that kept simplejwt's own authentication: the same token works."""
    return Response({"username": request.user.username, "user_id": request.auth["user_id"]})


def pid(request):
    return JsonResponse({"pid": os.getpid()})


def slow(request):
    time.sleep(2)
    return JsonResponse({"slept": 2})


def hang(request):
    while True:
        time.sleep(0.1)


def die(request, how):
    """A worker that dies while it holds the request."""
    if how == "segfault":
        ctypes.string_at(0)
    elif how == "exit":
        os._exit(3)
    elif how == "sigkill":
        # What the out-of-memory killer does.
        os.kill(os.getpid(), signal.SIGKILL)
    return JsonResponse({"alive": how})
