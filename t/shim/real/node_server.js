// node_server.js: node's libuv (one epoll event loop, a pool of threads
// woken through an eventfd) serving files and key derivations, for
// t/shim/real/run.sh and bench/real.sh.
//   node node_server.js PORT DIR
// GET /f/NAME: the file DIR/NAME, read in the pool (fs.readFile);
// GET /k/TEXT: pbkdf2-sha256(TEXT, "netpoll", 1000 rounds, 32 bytes) in hex,
// computed in the pool; anything else: 404.  SIGTERM: close, exit 0.
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');

const port = Number(process.argv[2]);
const dir = process.argv[3];
const server = http.createServer((req, res) => {
    const fail = (code) => { res.statusCode = code; res.end(); };
    if (req.url.startsWith('/f/')) {
        const name = path.basename(decodeURIComponent(req.url.slice(3)));
        fs.readFile(path.join(dir, name), (err, data) => (err ? fail(404) : res.end(data)));
    } else if (req.url.startsWith('/k/')) {
        crypto.pbkdf2(decodeURIComponent(req.url.slice(3)), 'netpoll', 1000, 32, 'sha256',
            (err, key) => (err ? fail(500) : res.end(key.toString('hex') + '\n')));
    } else {
        fail(404);
    }
});
server.keepAliveTimeout = 1000;
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
});
