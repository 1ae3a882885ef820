#!/usr/bin/env python3
"""CPU per flow of the Python Grafolean NetFlow bot's writer (netflowwriter.py).

The Python bot (github.com/grafolean/grafolean-netflow-bot, HEAD 5069f88) has
netflowcollector.py (UDP -> named pipe, one JSON line per datagram:
[base64(datagram), ts, [ip, port]]) and netflowwriter.py (named pipe -> parse
-> binary COPY into PostgreSQL/TimescaleDB table netflow_flows2). This script
runs the writer's code path, copied below from netflowwriter.py and dbutils.py
at 5069f88 (Copyright Grafolean, see that repository's licence), logic kept:

  * lines read with `for line in fp` from a real named pipe, fed by a forked
    child process that plays netflowcollector.py (its lines prebuilt, its CPU
    not counted), then json.loads + base64.b64decode, ensure_exporter() once;
  * the same parser: the bot vendors python-netflow-v9-softflowd as the git
    submodule pynetflow at commit 0e24ad9 (= upstream tag v0.11.1, which is not
    on PyPI). PyPI `netflow==0.11.0` is used here: its netflow/ package differs
    from 0e24ad9 only by five `if length == 0: break` guards in
    V9ExportPacket.__init__ (no parsing-cost change). Do NOT use >= 0.11.2: it
    switched V9 data records to struct.unpack (faster than what the bot runs).
    PYNETFLOW_DIR=/path/to/a/checkout (containing netflow/) overrides this.
  * parse_packet(data, templates), sequence-number checks and logging, a
    buffer of exports flushed when it holds more than MAX_BUFFER_SIZE=5 (i.e.
    every 6 datagrams) as one `COPY netflow_flows2 FROM STDIN WITH BINARY`
    (the bot does NOT run one INSERT per flow: it encodes each flow with
    struct.pack into a PGCOPY binary buffer), autocommit, through dbutils'
    ThreadedConnectionPool + get_db_cursor (one connection reused).
  Deviations: ansicolors' color() on log level names dropped; at the end of
  the input the writer flushes its last partial buffer (the bot would keep it
  until more data came) and returns instead of reopening the pipe.

Schema: dbutils.py's migrations 1..7 run unchanged, on plain PostgreSQL with
NO TimescaleDB: `create_hypertable(...)` is a no-op PL/pgSQL stand-in, so
netflow_flows2 is an ordinary heap table (logged, no index). TimescaleDB
would route rows into hourly chunks and by default also create an index on
(ts DESC); both cost PostgreSQL CPU that this does not measure (option
--ts-index adds that index to the stand-in). PostgreSQL runs with defaults
(fsync on, synchronous_commit on) in a throwaway cluster this script
initdb's under /tmp, listening on 127.0.0.1 only, stopped at the end.

Data: the Rust benches' flows: a pcap of 50,000 distinct flows (one Ethernet
frame each), exported by softflowd as NetFlow v9 to a UDP socket here
(~1,600 datagrams), then replayed in a loop until --flows flows were fed or
--seconds passed. CPU: /proc/<pid>/stat utime+stime of the writer (this
process, during the run only) and of PostgreSQL (postmaster incl. its reaped
children's cutime+cstime, plus its live children); steal from /proc/stat.
Checked afterwards: count(*) and sum(in_bytes) of netflow_flows2 equal the
flows fed, as counted by a small independent v9 decoder in this script.

Setup (Debian 12, as root):
    apt-get update && apt-get install -y postgresql softflowd
    pip install 'netflow==0.11.0' psycopg2-binary
    python3 bots/netflow/benches/python_writer.py [--flows 500000] [--seconds 60]

(The bot pins psycopg2-binary==2.8.6, which has no wheel for Python >= 3.10;
any 2.9.x runs the same copy_expert path.) Must run as root or as postgres
(initdb is run as the postgres user when root).
"""

import argparse
import base64
import glob
import importlib.metadata
import json
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime
from io import BytesIO

if os.environ.get("PYNETFLOW_DIR"):
    sys.path.insert(0, os.environ["PYNETFLOW_DIR"])
import netflow  # noqa: E402
from netflow import parse_packet  # noqa: E402
from netflow.utils import UnknownExportVersion  # noqa: E402
from netflow.v9 import V9TemplateNotRecognized  # noqa: E402

import psycopg2  # noqa: E402
import psycopg2.extras  # noqa: E402,F401
from psycopg2.pool import ThreadedConnectionPool  # noqa: E402
from psycopg2.extensions import ISOLATION_LEVEL_AUTOCOMMIT  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")

# ---------------------------------------------------------------------------
# lookup.py (5069f88)
DIRECTION_INGRESS = 0

# ---------------------------------------------------------------------------
# dbutils.py (5069f88), colors dropped, connection parameters from DB_PORT.
IS_DEBUG = os.environ.get('DEBUG', 'false') in ['true', 'yes', '1']
logging.basicConfig(format='%(asctime)s.%(msecs)03d | %(levelname)s | %(message)s',
                    datefmt='%Y-%m-%d %H:%M:%S', level=logging.DEBUG if IS_DEBUG else logging.INFO)
logging.addLevelName(logging.DEBUG, "DBG")
logging.addLevelName(logging.INFO, "INF")
logging.addLevelName(logging.WARNING, 'WRN')
logging.addLevelName(logging.ERROR, 'ERR')
log = logging.getLogger("{}.{}".format(__name__, "writer"))


class DBConnectionError(Exception):
    pass


db_pool = None
DB_PREFIX = 'netflow_'


@contextmanager
def get_db_connection():
    global db_pool
    if db_pool is None:
        db_connect()
    try:
        if db_pool is None:
            raise DBConnectionError()
        conn = db_pool.getconn()
        if conn is None:
            raise DBConnectionError()

        conn.autocommit = True
        conn.set_isolation_level(ISOLATION_LEVEL_AUTOCOMMIT)
        yield conn
    except (DBConnectionError, psycopg2.OperationalError):
        db_pool = None
        yield None
    finally:
        if db_pool is not None:
            db_pool.putconn(conn)


@contextmanager
def get_db_cursor():
    with get_db_connection() as connection:
        if connection is None:
            yield InvalidDBCursor()
            return

        cursor = connection.cursor()
        try:
            yield cursor
        finally:
            if not isinstance(cursor, InvalidDBCursor):
                cursor.close()


class InvalidDBCursor(object):
    def __getattr__(self, attr):
        raise DBConnectionError()


def db_connect():
    global db_pool
    host, dbname, user, password, connect_timeout = (
        os.environ.get('DB_HOST', '127.0.0.1'),
        os.environ.get('DB_DATABASE', 'grafolean'),
        os.environ.get('DB_USERNAME', 'postgres'),
        os.environ.get('DB_PASSWORD', ''),
        int(os.environ.get('DB_CONNECT_TIMEOUT', '10'))
    )
    try:
        db_pool = ThreadedConnectionPool(1, 20, database=dbname, user=user, password=password, host=host,
                                         port=int(os.environ['DB_PORT']), connect_timeout=connect_timeout)
    except Exception:
        db_pool = None
        log.warning("DB connection failed")


def get_existing_schema_version():
    existing_schema_version = 0
    with get_db_cursor() as c:
        try:
            c.execute(f'SELECT schema_version FROM {DB_PREFIX}runtime_data;')
            res = c.fetchone()
            existing_schema_version = res[0]
        except psycopg2.ProgrammingError:
            pass
    return existing_schema_version


def migrate_if_needed():
    existing_schema_version = get_existing_schema_version()
    try_migrating_to = existing_schema_version + 1
    while True:
        method = globals().get('migration_step_{}'.format(try_migrating_to))
        if method is None:
            break
        method()
        with get_db_cursor() as c:
            c.execute(f'UPDATE {DB_PREFIX}runtime_data SET schema_version = %s;', (try_migrating_to,))
        try_migrating_to += 1


def migration_step_1():
    with get_db_cursor() as c:
        c.execute(f'CREATE TABLE {DB_PREFIX}runtime_data (schema_version SMALLSERIAL NOT NULL);')
        c.execute(f'INSERT INTO {DB_PREFIX}runtime_data (schema_version) VALUES (1);')


def migration_step_2():
    with get_db_cursor() as c:
        c.execute(f"""
            CREATE UNLOGGED TABLE {DB_PREFIX}flows (
                ts INTEGER NOT NULL,
                client_ip INET NOT NULL,
                in_bytes INTEGER NOT NULL,
                protocol SMALLINT NOT NULL,
                direction SMALLINT NOT NULL,
                l4_dst_port INTEGER NOT NULL,
                l4_src_port INTEGER NOT NULL,
                input_snmp SMALLINT NOT NULL,
                output_snmp SMALLINT NOT NULL,
                ipv4_dst_addr INET NOT NULL,
                ipv4_src_addr INET NOT NULL
            ) PARTITION BY RANGE (ts);
        """)
        c.execute(f'CREATE INDEX {DB_PREFIX}flows_ts on {DB_PREFIX}flows (ts);')
        c.execute(f'CREATE TABLE {DB_PREFIX}bot_jobs (job_id TEXT NOT NULL PRIMARY KEY, last_used_ts NUMERIC(16,6) NOT NULL);')


def migration_step_3():
    with get_db_cursor() as c:
        c.execute(f'CREATE TABLE {DB_PREFIX}exporters (ip INET NOT NULL PRIMARY KEY);')


def migration_step_4():
    with get_db_cursor() as c:
        c.execute(f"ALTER TABLE {DB_PREFIX}flows ALTER COLUMN in_bytes SET DATA TYPE BIGINT;")


def migration_step_5():
    with get_db_cursor() as c:
        c.execute(f"ALTER TABLE {DB_PREFIX}flows RENAME COLUMN ipv4_dst_addr TO ipvX_dst_addr;")
        c.execute(f"ALTER TABLE {DB_PREFIX}flows RENAME COLUMN ipv4_src_addr TO ipvX_src_addr;")


def migration_step_6():
    with get_db_cursor() as c:
        c.execute(f"""
            CREATE TABLE {DB_PREFIX}flows2 (
                ts TIMESTAMP NOT NULL,
                client_ip INET NOT NULL,
                in_bytes BIGINT NOT NULL,
                protocol SMALLINT NOT NULL,
                direction SMALLINT NOT NULL,
                l4_dst_port INTEGER NOT NULL,
                l4_src_port INTEGER NOT NULL,
                input_snmp SMALLINT NOT NULL,
                output_snmp SMALLINT NOT NULL,
                ipvX_dst_addr INET NOT NULL,
                ipvX_src_addr INET NOT NULL
            );
        """)
        c.execute(f"SELECT create_hypertable('{DB_PREFIX}flows2', 'ts', chunk_time_interval => INTERVAL '1 hour');")
        c.execute(f'CREATE TABLE {DB_PREFIX}bot_jobs2 (job_id TEXT NOT NULL PRIMARY KEY, last_used_ts TIMESTAMP NOT NULL);')


def migration_step_7():
    with get_db_cursor() as c:
        c.execute(f"DROP  TABLE {DB_PREFIX}flows2;")
        c.execute(f"""
            CREATE TABLE {DB_PREFIX}flows2 (
                ts TIMESTAMP NOT NULL,
                client_ip INET NOT NULL,
                in_bytes BIGINT NOT NULL,
                protocol SMALLINT NOT NULL,
                direction SMALLINT NOT NULL,
                l4_dst_port INTEGER NOT NULL,
                l4_src_port INTEGER NOT NULL,
                input_snmp BIGINT NOT NULL,
                output_snmp BIGINT NOT NULL,
                ipvX_dst_addr INET NOT NULL,
                ipvX_src_addr INET NOT NULL
            );
        """)
        c.execute(f"SELECT create_hypertable('{DB_PREFIX}flows2', 'ts', chunk_time_interval => INTERVAL '1 hour');")


# ---------------------------------------------------------------------------
# netflowwriter.py (5069f88)
PG_COPYFROM_INIT = struct.pack('!11sII', b'PGCOPY\n\377\r\n\0', 0, 0)
IPV4_ADDRESS_PREFIX = struct.pack('!BBBB', socket.AF_INET, 32, 0, 4)
IPV6_ADDRESS_PREFIX = struct.pack('!BBBB', socket.AF_INET + 1, 128, 0, 16)
PG_EPOCH_TIMESTAMP = 946684800


def _pgwriter_init():
    pg_writer = BytesIO()
    pg_writer.write(PG_COPYFROM_INIT)
    return pg_writer


def _pgwriter_encode(ts, client_ip, IN_BYTES, PROTOCOL, DIRECTION, L4_DST_PORT, L4_SRC_PORT, INPUT_SNMP, OUTPUT_SNMP, address_family, IPVx_DST_ADDR, IPVx_SRC_ADDR):
    buf = struct.pack('!Hiqi4s4siQiHiHiIiIiQiQ',
        11,
        8, int(1000000 * (ts - PG_EPOCH_TIMESTAMP)),
        8, IPV4_ADDRESS_PREFIX, socket.inet_aton(client_ip),
        8, IN_BYTES,
        2, PROTOCOL,
        2, DIRECTION,
        4, L4_DST_PORT,
        4, L4_SRC_PORT,
        8, INPUT_SNMP,
        8, OUTPUT_SNMP,
    )
    if address_family != socket.AF_INET6:
        buf2 = struct.pack('!i4s4si4s4s',
            8, IPV4_ADDRESS_PREFIX, IPVx_DST_ADDR,
            8, IPV4_ADDRESS_PREFIX, IPVx_SRC_ADDR,
        )
    else:
        buf2 = struct.pack('!i4s16si4s16s',
            4 + 16, IPV6_ADDRESS_PREFIX, IPVx_DST_ADDR,
            4 + 16, IPV6_ADDRESS_PREFIX, IPVx_SRC_ADDR,
        )
    return buf + buf2


def _pgwriter_finish(pgwriter):
    try:
        with get_db_cursor() as c:
            pgwriter.write(struct.pack('!h', -1))
            pgwriter.seek(0)
            c.copy_expert(f"COPY {DB_PREFIX}flows2 FROM STDIN WITH BINARY", pgwriter)
    except DBConnectionError:
        log.error("Error writing to DB, records lost!")
        return


def process_named_pipe(named_pipe_filename, deadline):
    """The bot's loop; returns (lines read) at EOF or after `deadline` (benchmark additions)."""
    templates = {"netflow": {}, "ipfix": {}}
    last_record_seqs = {}
    buffer = []
    known_exporters = set()
    MAX_BUFFER_SIZE = 5
    lines_read = 0  # benchmark
    with open(named_pipe_filename, "rb") as fp:
        log.info(f"Opened named pipe {named_pipe_filename}")
        for line in fp:
            if len(line) == 0:
                break
            lines_read += 1  # benchmark
            try:
                data_b64, ts, client = json.loads(line)
                client_ip, _ = client
                data = base64.b64decode(data_b64)

                if client_ip not in known_exporters:
                    ensure_exporter(client_ip)
                    known_exporters.add(client_ip)
                    log.warning(f"[{client_ip}] New exporter!")

                try:
                    export = parse_packet(data, templates)
                    log.debug(f"[{client_ip}] Received record [{export.header.sequence}]: {datetime.utcfromtimestamp(ts)}")

                    last_record_seq = last_record_seqs.get(client_ip)
                    if last_record_seq is None:
                        log.warning(f"[{client_ip}] Last record sequence number is not known, starting with {export.header.sequence}")
                    elif export.header.sequence != last_record_seq + 1:
                        log.error(f"[{client_ip}] Sequence number ({export.header.sequence}) does not follow ({last_record_seq}), some records might have been skipped")
                    last_record_seqs[client_ip] = export.header.sequence

                    buffer.append((ts, client_ip, export,))
                    if len(buffer) > MAX_BUFFER_SIZE:
                        write_buffer(buffer)
                        buffer = []
                except UnknownExportVersion:
                    log.warning("Unknown NetFlow version")
                    continue
                except V9TemplateNotRecognized:
                    log.warning("Failed to decode a v9 ExportPacket, template not recognized (if this happens at the start, it's ok)")
                    if client_ip in last_record_seqs:
                        last_record_seqs[client_ip] += 1
                    continue

            except Exception:
                log.exception("Error writing line, skipping...")
            if time.monotonic() > deadline:  # benchmark
                break
    if buffer:  # benchmark: flush the last partial buffer
        write_buffer(buffer)
    return lines_read


def ensure_exporter(client_ip):
    with get_db_cursor() as c:
        c.execute(f"INSERT INTO {DB_PREFIX}exporters (ip) VALUES (%s) ON CONFLICT DO NOTHING;", (client_ip,))


def write_buffer(buffer):
    log.debug(f"Writing {len(buffer)} records to DB")

    def _get_data(buffer):
        for ts, client_ip, export in buffer:
            netflow_version, flows = export.header.version, export.flows
            if netflow_version == 9:
                for f in flows:
                    try:
                        if not f.data.get("IPV6_DST_ADDR", None) is None:
                            address_family = socket.AF_INET6
                            dst = socket.inet_pton(address_family, f.data["IPV6_DST_ADDR"])
                            src = socket.inet_pton(address_family, f.data["IPV6_SRC_ADDR"])
                        else:
                            address_family = socket.AF_INET
                            dst = socket.inet_aton(f.data["IPV4_DST_ADDR"])
                            src = socket.inet_aton(f.data["IPV4_SRC_ADDR"])

                        yield _pgwriter_encode(
                            ts,
                            client_ip,
                            f.data["IN_BYTES"],
                            f.data["PROTOCOL"],
                            f.data.get("DIRECTION", DIRECTION_INGRESS),
                            f.data.get("L4_DST_PORT", 0),
                            f.data.get("L4_SRC_PORT", 0),
                            f.data.get("INPUT_SNMP", 0),
                            f.data.get("OUTPUT_SNMP", 0),
                            address_family,
                            dst,
                            src,
                        )
                    except Exception:
                        log.exception(f"[{client_ip}] Error decoding v9 flow. Contents: {repr(f.data)}")
            elif netflow_version == 5:
                for f in flows:
                    try:
                        yield _pgwriter_encode(
                            ts, client_ip, f.data["IN_OCTETS"], f.data["PROTO"], DIRECTION_INGRESS,
                            f.data["DST_PORT"], f.data["SRC_PORT"], f.data["INPUT"], f.data["OUTPUT"],
                            socket.AF_INET,
                            struct.pack('!I', f.data["IPV4_DST_ADDR"]),
                            struct.pack('!I', f.data["IPV4_SRC_ADDR"]),
                        )
                    except Exception:
                        log.exception(f"[{client_ip}] Error decoding v5 flow. Contents: {repr(f.data)}")
            else:
                log.error(f"[{client_ip}] Only Netflow v5 and v9 currently supported, ignoring record (version: [{export.header.version}])")

    pgwriter = _pgwriter_init()
    for encoded_data in _get_data(buffer):
        pgwriter.write(encoded_data)
    _pgwriter_finish(pgwriter)


# ---------------------------------------------------------------------------
# Benchmark harness (not from the bot).

def many_flows(n):
    """The Rust benches' flows (tests/common/mod.rs many_flows)."""
    for i in range(n):
        yield ((10, (i >> 16) & 255, (i >> 8) & 255, i & 255),
               (192, 168, i % 1000 // 250, i % 250 + 1),
               6 if i % 5 == 0 else 17, 1024 + i % 50000, 1 + i % 100, 40 + i % 1400)


def ip_checksum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s > 0xffff:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


def write_pcap(path, n):
    """Ethernet pcap, one frame per flow, 10 ms apart; returns the sum of IP lengths."""
    total = 0
    with open(path, 'wb') as out:
        out.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        for k, (src, dst, proto, sport, dport, payload) in enumerate(many_flows(n)):
            if proto == 6:
                l4 = struct.pack('!HHIIBBHHH', sport, dport, 1, 0, 0x50, 0x18, 65535, 0, 0)
            else:
                l4 = struct.pack('!HHHH', sport, dport, 8 + payload, 0)
            l4 += b'x' * payload
            ip = struct.pack('!BBHHHBBH4B4B', 0x45, 0, 20 + len(l4), 1, 0, 64, proto, 0, *src, *dst)
            ip = ip[:10] + struct.pack('!H', ip_checksum(ip)) + ip[12:]
            frame = b'\0' * 12 + b'\x08\x00' + ip + l4
            total += 20 + len(l4)
            micros = k * 10000
            out.write(struct.pack('<IIII', 1700000000 + micros // 1000000, micros % 1000000, len(frame), len(frame)))
            out.write(frame)
    return total


def capture(pcap, workdir):
    """softflowd's v9 export of `pcap`, as a list of (datagram, receive time)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)  # SO_RCVBUFFORCE (root)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 20)
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    subprocess.run(['softflowd', '-d', '-r', pcap, '-v', '9', '-n', f'127.0.0.1:{port}', '-c', 'none',
                    '-p', os.path.join(workdir, 'softflowd.pid'), '-m', '100000'],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sock.settimeout(0.5)
    out = []
    try:
        while True:
            out.append((sock.recv(65536), time.time()))
    except socket.timeout:
        pass
    sock.close()
    return out


def v9_expect(datagrams):
    """Independent minimal v9 decoder: (flows, sum of IN_BYTES) per datagram."""
    templates, out = {}, []
    for d in datagrams:
        assert struct.unpack_from('!H', d)[0] == 9
        at, flows, nbytes = 20, 0, 0
        while at + 4 <= len(d):
            fid, flen = struct.unpack_from('!HH', d, at)
            if flen < 4:
                break
            body = d[at + 4:at + flen]
            if fid == 0:
                p = 0
                while p + 4 <= len(body):
                    tid, cnt = struct.unpack_from('!HH', body, p)
                    fields = [struct.unpack_from('!HH', body, p + 4 + 4 * j) for j in range(cnt)]
                    templates[tid] = fields
                    p += 4 + 4 * cnt
            elif fid in templates:  # (not options data: softflowd's option template 256 is in flowset 1)
                fields = templates[fid]
                rlen = sum(ln for _, ln in fields)
                p = 0
                while p + rlen <= len(body):
                    q = p
                    for ftype, ln in fields:
                        if ftype == 1:  # IN_BYTES
                            nbytes += int.from_bytes(body[q:q + ln], 'big')
                        q += ln
                    flows += 1
                    p += rlen
            at += flen
        out.append((flows, nbytes))
    return out


def ticks(pid, children_reaped=False):
    with open(f'/proc/{pid}/stat') as f:
        rest = f.read().rsplit(')', 1)[1].split()
    t = int(rest[11]) + int(rest[12])
    if children_reaped:
        t += int(rest[13]) + int(rest[14])
    return t


def pg_ticks(postmaster):
    """Postmaster (with its exited children) plus its live children."""
    total = ticks(postmaster, True)
    for e in os.listdir('/proc'):
        if not e.isdigit():
            continue
        try:
            with open(f'/proc/{e}/stat') as f:
                rest = f.read().rsplit(')', 1)[1].split()
            if int(rest[1]) == postmaster:
                total += int(rest[11]) + int(rest[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def steal():
    with open('/proc/stat') as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    return cpu[7], sum(cpu)


def free_tcp_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Postgres:
    """A throwaway cluster in `dir`, 127.0.0.1 only, trust auth."""

    def __init__(self, workdir):
        bins = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'), key=lambda p: int(p.split('/')[4]))
        if not bins:
            sys.exit('PostgreSQL not found: apt-get install postgresql')
        self.bin = os.path.dirname(bins[-1])
        self.data = os.path.join(workdir, 'pgdata')
        self.port = free_tcp_port()
        self.as_user = ['runuser', '-u', 'postgres', '--'] if os.geteuid() == 0 else []
        if os.geteuid() == 0:
            shutil.chown(workdir, 'postgres')
        subprocess.run(self.as_user + [f'{self.bin}/initdb', '-D', self.data, '-U', 'postgres', '--auth=trust',
                                       '-E', 'UTF8', '--locale=C'], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(self.as_user + [f'{self.bin}/pg_ctl', '-D', self.data, '-w', '-l',
                                       os.path.join(workdir, 'pg.log'), '-o',
                                       f"-c listen_addresses=127.0.0.1 -p {self.port} -k {workdir}", 'start'],
                       check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(self.data, 'postmaster.pid')) as f:
            self.pid = int(f.readline())

    def stop(self):
        subprocess.run(self.as_user + [f'{self.bin}/pg_ctl', '-D', self.data, '-m', 'fast', '-w', 'stop'],
                       stdout=subprocess.DEVNULL)


def feeder(fifo, lines, flows_per_line, target_flows, deadline):
    """The collector's side: write prebuilt lines to the pipe until enough flows were sent."""
    sent = 0
    try:
        with open(fifo, 'wb') as fp:
            k = 0
            while sent < target_flows and time.monotonic() < deadline:
                fp.write(lines[k % len(lines)])
                sent += flows_per_line[k % len(lines)]
                k += 1
    except BrokenPipeError:
        pass
    os._exit(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--flows', type=int, default=500_000, help='flows to feed (default 500,000)')
    ap.add_argument('--seconds', type=float, default=60, help='or stop after this long (default 60)')
    ap.add_argument('--ts-index', action='store_true', help="create TimescaleDB's default (ts DESC) index")
    args = ap.parse_args()
    t_start = time.monotonic()

    workdir = tempfile.mkdtemp(prefix='pywriter-bench-')
    os.chmod(workdir, 0o755)
    pcap = os.path.join(workdir, 'flows.pcap')
    ip_bytes = write_pcap(pcap, 50_000)
    captured = capture(pcap, workdir)
    datagrams = [d for d, _ in captured]
    expect = v9_expect(datagrams)
    per_pass = (sum(f for f, _ in expect), sum(b for _, b in expect))
    print(f'netflow (parser) {importlib.metadata.version("netflow")} from {os.path.dirname(netflow.__file__)}; '
          f'psycopg2 {psycopg2.__version__}; Python {sys.version.split()[0]}', file=sys.stderr)
    print(f'softflowd: {len(datagrams)} datagrams, {per_pass[0]} flows, {per_pass[1]} bytes per pass '
          f'(pcap: 50000 flows, {ip_bytes} IP bytes)', file=sys.stderr)
    if per_pass != (50_000, ip_bytes):
        sys.exit('softflowd did not export every flow of the pcap once')
    # As netflowcollector.py writes them:
    lines = [json.dumps((base64.b64encode(d).decode(), ts, ('127.0.0.1', 50000))).encode() + b'\n'
             for d, ts in captured]
    flows_per_line = [f for f, _ in expect]

    pg = Postgres(workdir)
    try:
        os.environ['DB_PORT'] = str(pg.port)
        subprocess.run(pg.as_user + [f'{pg.bin}/createdb', '-h', '127.0.0.1', '-p', str(pg.port), '-U', 'postgres',
                                     'grafolean'], check=True)
        with get_db_cursor() as c:
            # TimescaleDB stand-in: a no-op (or only its default index, with --ts-index).
            body = ("EXECUTE format('CREATE INDEX ON %s (%I DESC)', relation, time_column_name);"
                    if args.ts_index else 'NULL;')
            c.execute("CREATE FUNCTION create_hypertable(relation regclass, time_column_name name, "
                      "chunk_time_interval interval DEFAULT NULL) RETURNS void LANGUAGE plpgsql AS "
                      f"$$ BEGIN {body} END $$;")
        migrate_if_needed()
        with get_db_cursor() as c:
            c.execute('SELECT pg_backend_pid();')
            backend = c.fetchone()[0]

        fifo = os.path.join(workdir, 'pipe')
        os.mkfifo(fifo)
        t0 = time.monotonic()
        deadline = t0 + args.seconds
        child = os.fork()
        if child == 0:
            feeder(fifo, lines, flows_per_line, args.flows, deadline)
        w0, p0, b0, s0 = ticks(os.getpid()), pg_ticks(pg.pid), ticks(backend), steal()
        lines_read = process_named_pipe(fifo, deadline)
        wall = time.monotonic() - t0
        w1, p1, b1 = ticks(os.getpid()), pg_ticks(pg.pid), ticks(backend)
        s1 = steal()
        os.waitpid(child, 0)

        fed = [expect[k % len(expect)] for k in range(lines_read)]
        fed_flows, fed_bytes = sum(f for f, _ in fed), sum(b for _, b in fed)
        with get_db_cursor() as c:
            c.execute(f'SELECT count(*), coalesce(sum(in_bytes), 0) FROM {DB_PREFIX}flows2;')
            rows, nbytes = c.fetchone()
        ok = (rows, nbytes) == (fed_flows, fed_bytes)
        wcpu, pcpu, bcpu = (w1 - w0) / CLK_TCK, (p1 - p0) / CLK_TCK, (b1 - b0) / CLK_TCK
        st = 100.0 * (s1[0] - s0[0]) / max(1, s1[1] - s0[1])
        print()
        print(f'Python writer (netflowwriter.py @5069f88), {len(datagrams)} softflowd v9 datagrams replayed, '
              f'plain PostgreSQL (no TimescaleDB{", ts DESC index" if args.ts_index else ""})')
        print('| flows written | CPU s (writer) | CPU s (postgres) | CPU ns per flow (total) | flows/s | steal |')
        print('|---|---|---|---|---|---|')
        print(f'| {rows} | {wcpu:.2f} | {pcpu:.2f} | {1e9 * (wcpu + pcpu) / max(1, rows):.0f} | '
              f'{rows / wall:.0f} | {st:.1f} % |')
        print()
        print(f'datagrams fed: {lines_read}; wall {wall:.1f} s; postgres CPU of which the serving backend: '
              f'{bcpu:.2f} s; check count(*)={rows} sum(in_bytes)={nbytes} vs fed {fed_flows} / {fed_bytes}: '
              f'{"OK" if ok else "MISMATCH"}; total runtime {time.monotonic() - t_start:.0f} s')
    finally:
        db_pool is not None and db_pool.closeall()
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
