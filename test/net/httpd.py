#!/usr/bin/env python3
"""test/net/httpd.py: the scripted HTTP server of the network tests.

    python3 test/net/httpd.py PORTFILE

Listens on 127.0.0.1 on a free port, writes the port to PORTFILE, and serves
until killed (it also exits by itself after 30 minutes).  Each path is one
behaviour:

  /items?page=N        json pages of two records; "next" links to page N+1 up to 3
  /link?page=N         the same pages, the next one in a Link header
  /offset?offset=K     two records a page out of five, then an empty page
  /static              one fixed page, with an ETag (304 to If-None-Match)
  /ndjson              three ndjson lines, one of them broken
  /garbage             a body that is not JSON
  /slow                answers after 5 seconds
  /trickle             sends a byte a second for 60 seconds
  /flaky?key=K         503 on the first request of each key, then a page
  /ratelimit?key=K     429 with Retry-After: 3 on the first request of each key, then a page
  /big?kb=N            a JSON page of N kilobytes
  /bigz?kb=N           the same, gzip-compressed (small on the wire)
  /redirect?to=URL     302 to URL
  /status?code=N       that status
  /echo                one record holding the request's Authorization header
  /hook                POST: a webhook (or export) receiver; 503 while down
  /hook/down, /hook/up switch the receiver; /hook/slow makes it answer after 8 seconds
  /hook/received       what was received (bodies, headers) and the keys of refused posts
"""
import gzip
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LOCK = threading.Lock()
SEEN = {}
HOOK = {'up': True, 'slow': False, 'received': [], 'refused': 0, 'refused_keys': []}


def first_time(key):
    with LOCK:
        n = SEEN.get(key, 0)
        SEEN[key] = n + 1
        return n == 0


def records(page):
    return [{'id': page * 10 + 1, 'page': page}, {'id': page * 10 + 2, 'page': page}]


class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, fmt, *args):
        sys.stderr.write('httpd: ' + (fmt % args) + '\n')

    def send(self, code, body=b'', ctype='application/json', headers=None):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, obj, code=200, headers=None):
        self.send(code, json.dumps(obj), headers=headers)

    def do_GET(self):
        self.route()

    def do_POST(self):
        length = int(self.headers.get('Content-Length') or 0)
        self.body = self.rfile.read(length) if length else b''
        self.route()

    def route(self):
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        path = u.path
        if path == '/items':
            page = int(q.get('page', '1'))
            body = {'data': records(page)}
            if page < 3:
                body['next'] = '/items?page=%d' % (page + 1)
            self.send_json(body)
        elif path == '/link':
            page = int(q.get('page', '1'))
            headers = {}
            if page < 3:
                headers['Link'] = '<http://127.0.0.1:%d/link?page=%d>; rel="next"' % (
                    self.server.server_address[1], page + 1)
            self.send_json(records(page), headers=headers)
        elif path == '/offset':
            offset = int(q.get('offset', '0'))
            allrec = [{'id': i} for i in range(1, 6)]
            self.send_json({'items': allrec[offset:offset + 2]})
        elif path == '/static':
            etag = '"v1"'
            if self.headers.get('If-None-Match') == etag:
                self.send(304, headers={'ETag': etag})
            else:
                self.send_json([{'id': 1}, {'id': 2}], headers={'ETag': etag})
        elif path == '/ndjson':
            self.send(200, '{"id": 1}\n{"id": 2\n{"id": 3}\n', ctype='application/x-ndjson')
        elif path == '/garbage':
            self.send(200, '<html>not json</html>', ctype='text/html')
        elif path == '/slow':
            time.sleep(5)
            self.send_json([{'id': 1}])
        elif path == '/trickle':
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', '1000')
            self.end_headers()
            try:
                for _ in range(60):
                    self.wfile.write(b' ')
                    self.wfile.flush()
                    time.sleep(1)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif path == '/flaky':
            if first_time('flaky' + q.get('key', '')):
                self.send(503, 'unavailable', ctype='text/plain')
            else:
                self.send_json([{'id': 1, 'flaky': True}])
        elif path == '/ratelimit':
            if first_time('ratelimit' + q.get('key', '')):
                self.send(429, 'slow down', ctype='text/plain', headers={'Retry-After': '3'})
            else:
                self.send_json([{'id': 1, 'limited': True}])
        elif path in ('/big', '/bigz'):
            kb = int(q.get('kb', '2048'))
            body = json.dumps([{'id': 1, 'pad': 'x' * (kb * 1024)}]).encode()
            if path == '/bigz':
                self.send(200, gzip.compress(body), headers={'Content-Encoding': 'gzip'})
            else:
                self.send(200, body)
        elif path == '/redirect':
            self.send(302, '', headers={'Location': q['to']})
        elif path == '/status':
            self.send(int(q['code']), 'status', ctype='text/plain')
        elif path == '/echo':
            self.send_json([{'authorization': self.headers.get('Authorization')}])
        elif path == '/hook/down':
            HOOK['up'] = False
            self.send_json({'up': False})
        elif path == '/hook/up':
            HOOK['up'] = True
            self.send_json({'up': True})
        elif path == '/hook/slow':
            HOOK['slow'] = True
            self.send_json({'slow': True})
        elif path == '/hook/received':
            with LOCK:
                self.send_json({'received': HOOK['received'], 'refused': HOOK['refused'],
                                'refused_keys': HOOK['refused_keys']})
        elif path == '/hook':
            if HOOK['slow']:
                time.sleep(8)
            with LOCK:
                if not HOOK['up']:
                    HOOK['refused'] += 1
                    HOOK['refused_keys'].append(self.headers.get('Idempotency-Key'))
                    up = False
                else:
                    HOOK['received'].append({'body': getattr(self, 'body', b'').decode(),
                                             'content_type': self.headers.get('Content-Type'),
                                             'token': self.headers.get('X-Token'),
                                             'key': self.headers.get('Idempotency-Key')})
                    up = True
            if up:
                self.send(200, 'ok', ctype='text/plain')
            else:
                self.send(503, 'down', ctype='text/plain')
        else:
            self.send(404, 'no such behaviour', ctype='text/plain')


def main():
    server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    server.daemon_threads = True
    tmp = sys.argv[1] + '.tmp'
    with open(tmp, 'w') as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, sys.argv[1])
    timer = threading.Timer(1800, server.shutdown)
    timer.daemon = True
    timer.start()
    server.serve_forever()


if __name__ == '__main__':
    main()
