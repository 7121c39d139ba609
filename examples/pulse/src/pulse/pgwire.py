"""A minimal pure-Python PostgreSQL client (protocol 3.0), just enough for pulse.

Supports password, md5 and SCRAM-SHA-256 authentication, the simple query protocol (several statements,
no parameters) and the extended protocol for parameterised statements ($1, $2, ... sent apart from the
SQL text, so values can never be read as SQL). No TLS: pulse talks to a database on a trusted network.
"""

import base64
import hashlib
import hmac
import os
import socket
import struct
import unicodedata

PROTOCOL_VERSION = 196608  # 3.0

# Result columns of these types come back as Python values; everything else stays text.
_CONVERTERS = {16: lambda s: s == "t", 20: int, 21: int, 23: int, 26: int, 700: float, 701: float}


class Error(Exception):
    """Any failure talking to the server (connection, protocol or authentication)."""


class ServerError(Error):
    """An ErrorResponse; str() is the server's own message, .fields has all of it (C = SQLSTATE)."""

    def __init__(self, fields):
        self.fields = fields
        self.sqlstate = fields.get("C")
        super().__init__(fields.get("M", "unknown server error"))


class Connection:
    def __init__(self, host="127.0.0.1", port=5432, user="postgres", password=None, database=None,
                 timeout=10.0, application_name="pulse"):
        self.user = user
        self.password = password
        self.auth_method = None  # "trust", "password", "md5" or "SCRAM-SHA-256": which one was used
        self.parameters = {}
        self._buffer = b""
        try:
            if host.startswith("/"):  # a unix socket directory, as libpq does it
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.settimeout(timeout)
                self._sock.connect(os.path.join(host, f".s.PGSQL.{port}"))
            else:
                self._sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as exc:
            raise Error(f"cannot connect to PostgreSQL at {host}:{port}: {exc}") from exc
        try:
            self._startup(database or user, application_name)
        except BaseException:
            self._sock.close()
            raise

    # -- wire helpers -------------------------------------------------------------------------------

    def _send(self, type_byte, payload=b""):
        try:
            self._sock.sendall(type_byte + struct.pack("!I", len(payload) + 4) + payload)
        except OSError as exc:
            raise Error(f"connection lost: {exc}") from exc

    def _read_exact(self, size):
        while len(self._buffer) < size:
            try:
                chunk = self._sock.recv(65536)
            except OSError as exc:  # includes socket.timeout
                raise Error(f"connection lost: {exc}") from exc
            if not chunk:
                raise Error("server closed the connection unexpectedly")
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _receive(self):
        header = self._read_exact(5)
        length = struct.unpack("!I", header[1:])[0]
        return header[:1], self._read_exact(length - 4)

    @staticmethod
    def _error_fields(payload):
        fields = {}
        for part in payload.split(b"\0"):
            if part:
                fields[part[:1].decode()] = part[1:].decode("utf-8", "replace")
        return fields

    # -- startup and authentication -----------------------------------------------------------------

    def _startup(self, database, application_name):
        params = {"user": self.user, "database": database, "application_name": application_name,
                  "client_encoding": "UTF8"}
        body = struct.pack("!I", PROTOCOL_VERSION)
        body += b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items()) + b"\0"
        try:
            self._sock.sendall(struct.pack("!I", len(body) + 4) + body)  # no type byte in this one
        except OSError as exc:
            raise Error(f"connection lost: {exc}") from exc
        scram = None
        while True:
            kind, payload = self._receive()
            if kind == b"E":
                raise ServerError(self._error_fields(payload))
            if kind == b"R":
                code = struct.unpack("!I", payload[:4])[0]
                if code == 0:
                    self.auth_method = self.auth_method or "trust"
                elif code == 3:
                    self.auth_method = "password"
                    self._send(b"p", self._password().encode() + b"\0")
                elif code == 5:
                    self.auth_method = "md5"
                    inner = hashlib.md5((self._password() + self.user).encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + payload[4:8]).hexdigest()
                    self._send(b"p", b"md5" + outer.encode() + b"\0")
                elif code == 10:
                    mechanisms = payload[4:].split(b"\0")
                    if b"SCRAM-SHA-256" not in mechanisms:
                        raise Error(f"server offers no supported SASL mechanism: {mechanisms}")
                    self.auth_method = "SCRAM-SHA-256"
                    scram = _Scram(self._password())
                    first = scram.client_first()
                    self._send(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first)
                elif code == 11:
                    self._send(b"p", scram.client_final(payload[4:]))
                elif code == 12:
                    scram.verify_server_final(payload[4:])
                else:
                    raise Error(f"unsupported authentication request {code} (only password, md5, SCRAM)")
            elif kind == b"S":
                key, value = payload.split(b"\0")[:2]
                self.parameters[key.decode()] = value.decode()
            elif kind == b"Z":
                return
            # BackendKeyData (K) and notices (N) are not needed.

    def _password(self):
        if self.password is None:
            raise Error("the server asks for a password but none was given")
        return self.password

    # -- queries -----------------------------------------------------------------------------------

    def query(self, sql, params=None):
        """Run SQL and return the rows of its (last) result as a list of tuples.

        Without params: the simple protocol, so a script of several statements works.
        With params: one statement with $1, $2, ... placeholders, values sent separately as text.
        """
        if params is None:
            self._send(b"Q", sql.encode() + b"\0")
        else:
            values = b""
            for value in params:
                if value is None:
                    values += struct.pack("!i", -1)
                else:
                    if isinstance(value, bool):
                        value = "true" if value else "false"
                    data = str(value).encode()
                    values += struct.pack("!I", len(data)) + data
            self._send(b"P", b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0))  # unnamed, types inferred
            self._send(b"B", b"\0\0" + struct.pack("!HH", 0, len(params)) + values + struct.pack("!H", 0))
            self._send(b"D", b"P\0")
            self._send(b"E", b"\0" + struct.pack("!I", 0))
            self._send(b"S")
        return self._collect()

    def _collect(self):
        rows, converters, error = [], [], None
        while True:
            kind, payload = self._receive()
            if kind == b"T":
                rows, converters = [], self._row_converters(payload)
            elif kind == b"D":
                rows.append(self._parse_row(payload, converters))
            elif kind == b"E":
                error = ServerError(self._error_fields(payload))
            elif kind == b"S":
                key, value = payload.split(b"\0")[:2]
                self.parameters[key.decode()] = value.decode()
            elif kind == b"Z":
                # Only now is the connection ready again, so errors are raised here.
                if error is not None:
                    raise error
                return rows
            # ParseComplete, BindComplete, NoData, CommandComplete, notices: nothing to keep.

    @staticmethod
    def _row_converters(payload):
        count = struct.unpack("!H", payload[:2])[0]
        pos, converters = 2, []
        for _ in range(count):
            pos = payload.index(b"\0", pos) + 1  # column name
            type_oid = struct.unpack("!I", payload[pos + 6:pos + 10])[0]
            converters.append(_CONVERTERS.get(type_oid, str))
            pos += 18
        return converters

    @staticmethod
    def _parse_row(payload, converters):
        count = struct.unpack("!H", payload[:2])[0]
        pos, row = 2, []
        for index in range(count):
            length = struct.unpack("!i", payload[pos:pos + 4])[0]
            pos += 4
            if length < 0:
                row.append(None)
                continue
            text = payload[pos:pos + length].decode()
            pos += length
            row.append(converters[index](text) if index < len(converters) else text)
        return tuple(row)

    def close(self):
        try:
            self._send(b"X")
        except Error:
            pass
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Scram:
    """SCRAM-SHA-256 client side (RFC 5802 / 7677) without channel binding, as PostgreSQL does it."""

    def __init__(self, password):
        # SASLprep, approximately: PostgreSQL itself falls back to the raw bytes when it cannot apply it.
        self.password = unicodedata.normalize("NFKC", password).encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"  # PostgreSQL ignores the SCRAM user name
        self.auth_message = None
        self.salted = None

    def client_first(self):
        return ("n,," + self.first_bare).encode()

    def client_final(self, server_first):
        server_first = server_first.decode()
        attrs = dict(item.split("=", 1) for item in server_first.split(","))
        if not attrs["r"].startswith(self.nonce):
            raise Error("SCRAM: server nonce does not extend the client nonce")
        self.salted = hashlib.pbkdf2_hmac("sha256", self.password, base64.b64decode(attrs["s"]), int(attrs["i"]))
        without_proof = f"c=biws,r={attrs['r']}"  # biws = base64("n,,"): no channel binding
        self.auth_message = f"{self.first_bare},{server_first},{without_proof}".encode()
        client_key = hmac.digest(self.salted, b"Client Key", "sha256")
        signature = hmac.digest(hashlib.sha256(client_key).digest(), self.auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify_server_final(self, server_final):
        attrs = dict(item.split("=", 1) for item in server_final.decode().split(","))
        server_key = hmac.digest(self.salted, b"Server Key", "sha256")
        expected = hmac.digest(server_key, self.auth_message, "sha256")
        if not hmac.compare_digest(base64.b64decode(attrs.get("v", "")), expected):
            raise Error("SCRAM: the server's signature is wrong (not the server we think it is)")


def connect(**kwargs):
    return Connection(**kwargs)
