#!/usr/bin/env node
// HTTP/2 test peer on node's own `http2` module (nghttp2 inside node, OpenSSL linked statically),
// for the collector's HTTP/2 capture tests.
//
//   node node_h2.js server [--tls CERT KEY] [--port 0]
//       prints "port N", then serves h2c (prior knowledge) or TLS with ALPN h2 until killed.
//   node node_h2.js client --url http(s)://127.0.0.1:N [--tag T]
//       on one session: GET /n/get/T, POST JSON /n/post/T, GET /n/trailers/T (a response with
//       trailers); checks each answer, prints "ok get", "ok post", "ok trailers", "done", exit 0.
//
// Answers (see body()): GET -> text "node <path>\n"; POST JSON -> {"path":P,"echo":<request>};
// /n/trailers/ -> text plus trailers x-node-trailer: <last path segment>, x-node-count: 3.
'use strict';
const http2 = require('http2');
const fs = require('fs');

function fail(message) {
  console.error('node_h2: ' + message);
  process.exit(1);
}

function body(path, requestBody, contentType) {
  if (contentType === 'application/json') return JSON.stringify({ path, echo: JSON.parse(requestBody) });
  return `node ${path}\n`;
}

function trailersFor(path) {
  return { 'x-node-trailer': path.split('/').pop(), 'x-node-count': '3' };
}

function server(args) {
  let port = 0;
  let tls = null;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--port') port = Number(args[++i]);
    else if (args[i] === '--tls') tls = { cert: fs.readFileSync(args[++i]), key: fs.readFileSync(args[++i]) };
    else fail('unknown server argument ' + args[i]);
  }
  const srv = tls ? http2.createSecureServer({ ...tls, allowHTTP1: false }) : http2.createServer();
  srv.on('stream', (stream, headers) => {
    const path = headers[':path'];
    const contentType = headers['content-type'] || '';
    const chunks = [];
    stream.on('data', (d) => chunks.push(d));
    stream.on('end', () => {
      const text = body(path, Buffer.concat(chunks).toString('utf8'), contentType);
      const type = contentType === 'application/json' ? 'application/json' : 'text/plain';
      if (path.startsWith('/n/trailers/')) {
        stream.respond({ ':status': 200, 'content-type': type, 'x-peer-path': path }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers(trailersFor(path)));
        stream.end(text);
      } else {
        stream.respond({ ':status': 200, 'content-type': type, 'content-length': Buffer.byteLength(text), 'x-peer-path': path });
        stream.end(text);
      }
    });
  });
  srv.on('sessionError', (e) => console.error('node_h2 server: ' + e));
  srv.listen(port, '127.0.0.1', () => console.log('port ' + srv.address().port));
}

function request(session, path, method, payload, contentType) {
  return new Promise((resolve, reject) => {
    const headers = { ':method': method, ':path': path };
    if (contentType) headers['content-type'] = contentType;
    const req = session.request(headers, { endStream: payload === undefined });
    const result = { headers: null, trailers: {}, body: '' };
    req.setEncoding('utf8');
    req.on('response', (h) => { result.headers = h; });
    req.on('trailers', (t) => { result.trailers = t; });
    req.on('data', (d) => { result.body += d; });
    req.on('end', () => resolve(result));
    req.on('error', reject);
    if (payload !== undefined) req.end(payload);
  });
}

async function client(args) {
  let url = null;
  let tag = 't';
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--url') url = args[++i];
    else if (args[i] === '--tag') tag = args[++i];
    else fail('unknown client argument ' + args[i]);
  }
  if (!url) fail('client needs --url');
  const session = http2.connect(url, { rejectUnauthorized: false });
  session.on('error', (e) => fail('session: ' + e));
  if (url.startsWith('https:')) {
    await new Promise((resolve) => session.once('connect', resolve));
    if (session.alpnProtocol !== 'h2') fail('ALPN gave ' + session.alpnProtocol);
  }
  const check = (what, r, path, expected) => {
    if (String(r.headers[':status']) !== '200') fail(`${what}: status ${r.headers[':status']}`);
    if (r.headers['x-peer-path'] !== path) fail(`${what}: answered for ${r.headers['x-peer-path']}`);
    if (r.body !== expected) fail(`${what}: body ${JSON.stringify(r.body)}, expected ${JSON.stringify(expected)}`);
  };

  const get = `/n/get/${tag}`;
  check('get', await request(session, get, 'GET'), get, body(get));
  console.log('ok get');

  const post = `/n/post/${tag}`;
  const json = JSON.stringify({ tag, n: 2, items: ['a', 'b'] });
  check('post', await request(session, post, 'POST', json, 'application/json'), post, body(post, json, 'application/json'));
  console.log('ok post');

  const tr = `/n/trailers/${tag}`;
  const r = await request(session, tr, 'GET');
  check('trailers', r, tr, body(tr));
  const want = trailersFor(tr);
  for (const k of Object.keys(want)) if (r.trailers[k] !== want[k]) fail(`trailers: ${k} = ${r.trailers[k]}`);
  console.log('ok trailers');

  await new Promise((resolve) => session.close(resolve));
  console.log('done');
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === 'server') server(rest);
else if (mode === 'client') client(rest).catch((e) => fail(String(e && e.stack || e)));
else fail('usage: node_h2.js server [--tls CERT KEY] [--port N] | client --url URL [--tag T]');
