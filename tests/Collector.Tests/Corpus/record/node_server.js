// node http server for the capture corpus: fixed bodies, keep-alive, chunked by default.
const http = require('http');
const port = parseInt(process.argv[2], 10);
const json = JSON.stringify({ service: 'node', ok: true, list: [1, 2, 3] });
const parts = ['alpha-', 'beta-', 'gamma'];
http.createServer((req, res) => {
  const chunks = [];
  req.on('data', c => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    if (req.url === '/json') {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(json) });
      res.end(req.method === 'HEAD' ? undefined : json);
    } else if (req.url === '/chunked') {
      res.writeHead(200, { 'Content-Type': 'text/plain' }); // no length: node sends chunked
      let i = 0;
      const next = () => { if (i < parts.length) { res.write(parts[i++]); setTimeout(next, 5); } else res.end(); };
      next();
    } else if (req.url === '/cached') {
      res.writeHead(304, { ETag: '"v1"' });
      res.end();
    } else if (req.url === '/upload') {
      const reply = `got ${body.length} bytes`;
      res.writeHead(201, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(reply) });
      res.end(reply);
    } else {
      res.writeHead(404, { 'Content-Length': 0 });
      res.end();
    }
  });
}).listen(port, '127.0.0.1', () => console.log('listening'));
