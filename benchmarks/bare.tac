"""
The baseline of benchmarks/pages.py: a bare twisted.web resource serving
fixed bytes, run by twistd exactly as the mirror is.
Environment: BARE_PORT, BARE_BODY (a file), BARE_TYPE (a content type).
"""

import os

from twisted.application import internet, service
from twisted.web.resource import Resource
from twisted.web.server import Site

body = open(os.environ["BARE_BODY"], "rb").read()
contentType = os.environ["BARE_TYPE"].encode()


class Bare(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", contentType)
        return body


application = service.Application("bare")
internet.TCPServer(int(os.environ["BARE_PORT"]), Site(Bare()), interface="127.0.0.1").setServiceParent(application)
