from django.urls import path

from . import views

urlpatterns = [
    path("me/", views.me),
    path("hello/", views.hello),
    path("stream/", views.stream),
    path("download/", views.download),
    path("huge/", views.huge),
    path("upload/", views.upload),
    path("where/", views.where),
    path("crash/", views.crash),
    path("jwt-me/", views.jwt_me),
    path("pid/", views.pid),
    path("slow/", views.slow),
    path("hang/", views.hang),
    path("die/<str:how>/", views.die),
]
