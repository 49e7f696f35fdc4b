# A test app: its data.bin through wsgi.file_wrapper, whole, from an offset
# (?offset), its first 5 bytes (?length), or a BytesIO instead (?bytesio).
import io, os
from wsgiref.validate import validator

PATH = os.path.join(os.path.dirname(__file__), "data.bin")


def app(environ, start_response):
    q = environ["QUERY_STRING"]
    f = open(PATH, "rb") if q != "bytesio" else io.BytesIO(b"from memory")
    headers = [("Content-Type", "application/octet-stream")]
    if q == "offset":
        f.seek(10)
    if q == "length":
        headers.append(("Content-Length", "5"))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](f, 4096)


application = validator(app)
