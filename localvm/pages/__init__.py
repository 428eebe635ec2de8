"""The localvm web page (de taartenfabriek's UI), served at `/` on 127.0.0.1 (docs/pages.md)."""
