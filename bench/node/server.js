// bench/node/server.js MODE [PORT] — the same handlers on Node.js's http module, for bench/run.
//   plain  answer "Hello, World!"
//   als    AsyncLocalStorage.run + one async hop (setImmediate) + getStore, then answer
'use strict';
const http = require('http');
const { AsyncLocalStorage } = require('async_hooks');

const mode = process.argv[2] || 'plain';
const port = Number(process.argv[3] || 0);
const als = new AsyncLocalStorage();
let seq = 0;

const handlers = {
  plain(req, res) {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end('Hello, World!');
  },
  als(req, res) {
    als.run(++seq, () => {
      setImmediate(() => {
        if (als.getStore() === undefined) throw new Error('lost the store');
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end('Hello, World!');
      });
    });
  },
};

const server = http.createServer(handlers[mode]);
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening on http://127.0.0.1:${server.address().port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
