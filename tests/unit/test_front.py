"""
nginx in front of the mirror: C{--accel-redirect} in memory, and the real
nginx with C{contrib/nginx/tailmirror.conf} in front of the real
C{twistd tailmirror}, installed through with pip and uv.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from tailmirror.web._front import fromFront

from ..fakeindex import FakeProject, sdist
from ..harness import JSON, DAY, NOW, Harness, Threads, filePath, iso, linksOf, policyClock
from ..wheels import tree

FRONT = {"X-Tailmirror-Front": "accel"}
ASK = {"X-Tailmirror-Front": "ask"}


class _BehindAFront(SynchronousTestCase):
    """
    A mirror run with C{--accel-redirect}, and the one file of gamma: its
    mirror path, content, and path upstream.
    """

    def setUp(self) -> None:
        self.h = Harness(tree(), accelRedirect="/+accel/")
        self.addCleanup(self.h.mirror.close)
        [link] = linksOf(self.h.get("/simple/gamma/", JSON)).values()
        self.path = os.path.normpath("/simple/gamma/" + link["url"])
        self.content = self.h.index.content(link["filename"])
        self.upstreamPath = "/files/" + link["filename"]


class AccelRedirectTests(_BehindAFront):
    """
    Warm files left to the front, for requests that come through it.
    """

    def test_warmFileRedirected(self) -> None:
        """
        A file the tree has, asked for through the front, is an empty
        answer that sends the front to the file's place in the tree, with
        the file's own headers; the place is where the tree keeps it.
        """
        self.assertEqual(self.h.get(self.path).body, self.content)
        answer = self.h.get(self.path, FRONT)
        self.assertEqual(answer.code, 200)
        self.assertEqual(answer.body, b"")
        where = answer.headers["x-accel-redirect"]
        self.assertTrue(where.startswith("/+accel/root/pypi/%2Bf/"), where)
        relative = urllib.request.url2pathname(where.removeprefix("/+accel/"))
        with open(os.path.join(self.h.tree.root, relative), "rb") as f:
            self.assertEqual(f.read(), self.content)
        self.assertEqual(answer.headers["cache-control"], "public, max-age=31536000, immutable")
        self.assertIn("etag", answer.headers)
        self.assertNotIn("accept-ranges", answer.headers)

    def test_notFromPlainClients(self) -> None:
        """
        Without the front's header the file itself is sent.
        """
        self.h.get(self.path)
        answer = self.h.get(self.path)
        self.assertEqual(answer.body, self.content)
        self.assertNotIn("x-accel-redirect", answer.headers)

    def test_onlyFromThisHost(self) -> None:
        """
        The front's header is taken from loopback and UNIX sockets only.
        """
        for peer, taken in [
            (IPv4Address("TCP", "127.0.0.1", 4000), True),
            (IPv6Address("TCP", "::1", 4000), True),
            (UNIXAddress(b"/run/tailmirror.sock"), True),
            (IPv4Address("TCP", "192.0.2.7", 4000), False),
            (IPv6Address("TCP", "2001:db8::7", 4000), False),
        ]:
            request = DummyRequest([b""])
            request.client = peer
            for mode in ("accel", "ask"):
                request.requestHeaders.setRawHeaders(b"x-tailmirror-front", [mode.encode()])
                self.assertEqual(fromFront(request), mode if taken else None, peer)  # type: ignore[arg-type]
            request.requestHeaders.setRawHeaders(b"x-tailmirror-front", [b"yes"])
            self.assertIsNone(fromFront(request))  # type: ignore[arg-type]

    def test_offByDefault(self) -> None:
        """
        Without C{--accel-redirect} the header changes nothing.
        """
        h = Harness(tree())
        self.addCleanup(h.mirror.close)
        h.get("/simple/gamma/")
        h.get(self.path)
        answer = h.get(self.path, FRONT)
        self.assertEqual(answer.body, self.content)

    def test_notModified(self) -> None:
        """
        A client that has the file gets a 304 from the mirror, no redirect.
        """
        etag = self.h.get(self.path).headers["etag"]
        answer = self.h.get(self.path, {**FRONT, "If-None-Match": etag})
        self.assertEqual(answer.code, 304)
        self.assertNotIn("x-accel-redirect", answer.headers)


class ColdThroughTheFrontTests(SynchronousTestCase):
    """
    A small cold file asked for through a front in C{X-Accel} mode.
    """

    def test_redirectedOnceKept(self) -> None:
        """
        The front is sent to the file's place in the tree, so the answer
        waits until the file is there, not only verified (as a plain
        client's does).
        """
        threads = Threads(held=("_place",))
        h = Harness(tree(), accelRedirect="/+accel/", threads=threads)
        self.addCleanup(h.mirror.close)
        [link] = linksOf(h.get("/simple/gamma/", JSON)).values()
        path = os.path.normpath("/simple/gamma/" + link["url"])
        d = h.start("GET", path, FRONT)
        h.flush()
        answered: list[Any] = []

        def seen(result: Any) -> Any:
            answered.append(result)
            return result

        d.addBoth(seen)
        self.assertEqual(answered, [])
        self.assertEqual(len(threads.waiting), 1)
        threads.release()
        answer = h.finish(d)
        self.assertEqual((answer.code, answer.body), (200, b""))
        where = answer.headers["x-accel-redirect"]
        relative = urllib.request.url2pathname(where.removeprefix("/+accel/"))
        with open(os.path.join(h.tree.root, relative), "rb") as f:
            self.assertEqual(f.read(), h.index.content(link["filename"]))


class AskTests(_BehindAFront):
    """
    The front's own question (C{X-Tailmirror-Front: ask}): may it send a
    file itself, and where is it?
    """

    def test_warm(self) -> None:
        """
        For a file the tree has, the answer is empty and names the file's
        place below the tree, as nginx takes it (not quoted), with the
        file's ETag, and how long the front may keep the answer; the
        file's use is recorded as a file served.
        """
        self.h.get(self.path)
        served = len(self.h.events.named("fileServed"))
        answer = self.h.get(self.path, ASK)
        self.assertEqual((answer.code, answer.body), (200, b""))
        place = answer.headers["x-tailmirror-file"]
        self.assertTrue(place.startswith("root/pypi/+f/"), place)
        with open(os.path.join(self.h.tree.root, place), "rb") as f:
            self.assertEqual(f.read(), self.content)
        self.assertEqual(answer.headers["x-accel-expires"], "10")
        self.assertEqual(answer.headers["etag"], self.h.get(self.path).headers["etag"])
        self.assertNotIn("cache-control", answer.headers)
        self.assertEqual(len(self.h.events.named("fileServed")), served + 2)

    def test_conditionsIgnored(self) -> None:
        """
        The answer is the same whatever conditions or range the question
        carries: one answer fits every client.
        """
        self.h.get(self.path)
        etag = self.h.get(self.path).headers["etag"]
        answer = self.h.get(self.path, {**ASK, "If-None-Match": etag, "Range": "bytes=0-1"})
        self.assertEqual((answer.code, answer.body), (200, b""))
        self.assertIn("x-tailmirror-file", answer.headers)

    def test_coldNotFetched(self) -> None:
        """
        For a file the tree has not, the answer sends the front to the
        mirror, and asking fetches nothing: the client's own request,
        passed on, does.
        """
        answer = self.h.get(self.path, ASK)
        self.assertEqual((answer.code, answer.body), (403, b""))  # nginx reads no body of it
        self.assertNotIn("x-tailmirror-file", answer.headers)
        self.assertNotIn("x-accel-expires", answer.headers)
        self.assertEqual(self.h.index.requests[self.upstreamPath], 0)
        passedOn = self.h.get(self.path, FRONT)
        self.assertEqual(passedOn.code, 200)
        self.assertEqual(self.h.index.requests[self.upstreamPath], 1)
        self.assertEqual(self.h.get(self.path, ASK).code, 200)

    def test_notAFile(self) -> None:
        """
        Whatever the mirror would refuse, a name it does not know or an
        index it does not have, is left to the mirror too: never a 404,
        which nginx's question could not take.
        """
        for path in ("/root/pypi/+f/abc/def/nothing.whl", "/root/pypi/other", "/root/nowhere/+f/a/b/c.whl"):
            self.assertEqual(self.h.get(path, ASK).code, 403, path)
            self.assertEqual(self.h.get(path).code, 404, path)

    def test_heldBack(self) -> None:
        """
        A file the tree has but the mirror's policy holds back (here the
        cooldown, turned on after the file was kept) is left to the mirror,
        which says why.
        """
        new = sdist("foo", "2.0", uploadTime=iso(NOW - DAY))
        h = Harness([FakeProject("foo", [new])], clock=policyClock(), accelRedirect="/+accel/")
        self.assertEqual(h.get(filePath(new)).body, new.content)
        h = h.restart(cooldown=3 * DAY, accelRedirect="/+accel/")
        self.addCleanup(h.mirror.close)
        h.get("/simple/foo/", JSON)
        self.assertEqual(h.get(filePath(new), ASK).code, 403)
        answer = h.get(filePath(new), FRONT)
        self.assertEqual(answer.code, 403)
        self.assertIn(b"cooldown", answer.body)

    def test_withoutAccelRedirect(self) -> None:
        """
        Without C{--accel-redirect} the front may send nothing itself: the
        question is answered so, and the client's request gets the file.
        """
        h = Harness(tree())
        self.addCleanup(h.mirror.close)
        h.get("/simple/gamma/")
        h.get(self.path)
        self.assertEqual(h.get(self.path, ASK).code, 403)
        self.assertEqual(h.get(self.path, FRONT).body, self.content)
