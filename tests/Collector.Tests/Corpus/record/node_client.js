// node http client for the capture corpus: several requests over one keep-alive connection.
const http = require('http');
const port = parseInt(process.argv[2], 10);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const requests = JSON.parse(process.argv[3]);
(async () => {
  for (const r of requests) {
    await new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: r.path, method: r.method, agent, headers: r.headers || {} }, res => {
        res.on('data', () => {});
        res.on('end', resolve);
      });
      req.on('error', reject);
      if (r.body) req.write(r.body);
      req.end();
    });
  }
  agent.destroy();
})();
