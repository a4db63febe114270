"""
A bucket of object storage shared by a fleet of mirrors (C{--store
s3://BUCKET[/PREFIX]}), through botocore, the client library every
S3-compatible store documents (region and credentials from the standard
AWS chain).  Its calls block: each runs in a thread, never on the reactor.

The bucket holds the local tree's layout (C{root/<index>/+f/<3>/<13>/
<filename>}, C{.metadata}, C{.provenance}): an object is put only once its
bytes matched their sha256 (a file without one is never put), by a
multipart upload completed only then and aborted otherwise, and never over
an object already there.  Beside them: each project's latest verified
upstream page (C{+pages/<index>/<project>}), for nodes that start with an
empty cache; and leases (C{+leases/<sha256>}), written with a conditional
put (C{If-None-Match: *}), so that of several nodes that miss the same
cold file at once only one downloads it from upstream.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

__all__ = ["Bucket", "BucketError", "PageCopy", "parseStore"]

#: Bytes of each part of a multipart upload (above S3's 5 MiB floor).
PART = 16 * 1024 * 1024
#: Seconds a lease holds before another node may take it over.
LEASE_FOR = 120.0


class BucketError(Exception):
    """
    The bucket cannot be used: one line that says why, for people.
    """


def parseStore(url: str) -> tuple[str, str]:
    """
    The bucket and the prefix (empty, or ending in C{/}) of
    C{s3://BUCKET[/PREFIX]}.

    @raise ValueError: if it is not one.
    """
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"not s3://BUCKET[/PREFIX]: {url!r}")
    prefix = parts.path.strip("/")
    return parts.netloc, prefix + "/" if prefix else ""


@dataclass(frozen=True)
class PageCopy:
    """
    A project page as upstream last gave it, kept in the bucket.
    """

    url: str
    etag: str | None
    contentType: str
    lastSerial: str | None
    body: bytes


def _why(e: BaseException) -> str:
    """
    One line of why a call to the bucket failed, never a credential.
    """
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        code = error.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = error.get("Message") or ""
        return " ".join(f"{code}: {message}".split())[:200]
    return " ".join(f"{type(e).__name__}: {e}".split())[:200]


def _code(e: BaseException) -> str:
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        return str((response.get("Error") or {}).get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
    return ""


class Bucket:
    """
    One bucket (and prefix) of an S3-compatible store.  Every method
    blocks: call it in a thread.
    """

    def __init__(self, bucket: str, prefix: str = "", endpoint: str | None = None, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        if client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:  # pragma: no cover - an install without the extra
                raise BucketError("--store needs boto3, which the install did not bring: pip install boto3") from None
            config = Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                s3={"addressing_style": "path"} if endpoint else {},
                max_pool_connections=32,
            )
            client = boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
        self.client = client
        #: Whether the store takes conditional writes (leases); L{None}
        #: until a lease was asked for.
        self.conditional: bool | None = None
        self.node = uuid.uuid4().hex[:12]

    def __repr__(self) -> str:
        return f"<Bucket s3://{self.bucket}/{self.prefix}>"

    def key(self, parts: tuple[str, ...]) -> str:
        return self.prefix + "/".join(parts)

    def check(self) -> None:
        """
        Make sure the bucket is there and ours to use.

        @raise BucketError: naming why not (no credentials, denied, no
            such bucket, unreachable).
        """
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as e:
            code = _code(e)
            name = type(e).__name__
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise BucketError(f"the bucket {self.bucket} does not exist") from None
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise BucketError(f"the bucket {self.bucket} denies these credentials ({code})") from None
            if name in ("NoCredentialsError", "PartialCredentialsError"):
                raise BucketError("no credentials for the store: set them as AWS's tools read them "
                                  "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, ~/.aws/credentials, a role)") from None
            raise BucketError(f"the store cannot be reached ({_why(e)})") from None

    def size(self, key: str) -> int | None:
        """
        The size of an object; L{None} if there is none.
        """
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except Exception as e:
            if _code(e) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def presign(self, key: str, seconds: int = 300) -> str:
        """
        A URL that reads an object for C{seconds}, with no credentials.
        """
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=seconds
        )
        return url

    def upload(self, key: str, f: BinaryIO, size: int, replace: bool = False) -> bool:
        """
        Put a file's verified bytes at C{key}, unless an object is there
        already (or C{replace}, for one found corrupt): one put for a small
        file, else a multipart upload completed only once every part is
        in, and aborted otherwise.

        @return: whether it was put.
        """
        if not replace and self.size(key) is not None:
            return False
        if size <= PART:
            data = f.read()
            extra = {} if replace else {"IfNoneMatch": "*"}
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
            except Exception as e:
                if _code(e) in ("412", "PreconditionFailed"):
                    return False  # another node put the same bytes meanwhile
                raise
            return True
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        try:
            parts = []
            number = 1
            while chunk := f.read(PART):
                done = self.client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload, PartNumber=number, Body=chunk
                )
                parts.append({"ETag": done["ETag"], "PartNumber": number})
                number += 1
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
            except Exception:
                pass
            raise
        return True

    def putPage(self, index: str, name: str, page: PageCopy) -> None:
        """
        Keep a project's latest verified upstream page.
        """
        meta = {"url": quote(page.url, safe=":/?=&%"), "content-type": page.contentType}
        if page.etag is not None:
            meta["etag"] = quote(page.etag, safe="")
        if page.lastSerial is not None:
            meta["serial"] = quote(page.lastSerial, safe="")
        self.client.put_object(Bucket=self.bucket, Key=self.key(("+pages", index, name)), Body=page.body, Metadata=meta)

    def getPage(self, index: str, name: str) -> PageCopy | None:
        """
        A project's page as a node of the fleet last kept it; L{None} if
        none did.
        """
        from urllib.parse import unquote

        try:
            found = self.client.get_object(Bucket=self.bucket, Key=self.key(("+pages", index, name)))
        except Exception as e:
            if _code(e) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        meta = found.get("Metadata") or {}
        body = found["Body"].read()
        etag = meta.get("etag")
        serial = meta.get("serial")
        return PageCopy(
            unquote(meta.get("url", "")),
            unquote(etag) if etag else None,
            meta.get("content-type", ""),
            unquote(serial) if serial else None,
            body,
        )

    def lease(self, sha256: str, seconds: float = LEASE_FOR) -> bool | None:
        """
        Take the lease of a file's download: C{True} if this node has it,
        C{False} if another node's holds; L{None} if the store takes no
        conditional writes (every node downloads for itself then).
        """
        key = self.key(("+leases", sha256))
        body = json.dumps({"node": self.node, "expires": time.time() + seconds}).encode()
        for _ in range(2):
            try:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*")
                self.conditional = True
                return True
            except Exception as e:
                code = _code(e)
                if code in ("NotImplemented", "501", "InvalidArgument"):
                    self.conditional = False
                    return None
                if code not in ("412", "PreconditionFailed", "409", "ConditionalRequestConflict"):
                    raise
            self.conditional = True
            try:
                held = json.loads(self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read())
                expired = float(held.get("expires", 0)) < time.time()
            except Exception as e:
                if _code(e) in ("404", "NoSuchKey", "NotFound"):
                    continue  # released meanwhile: try again
                expired = False
            if not expired:
                return False
            self.client.delete_object(Bucket=self.bucket, Key=key)  # its holder died
        return False

    def release(self, sha256: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key(("+leases", sha256)))
