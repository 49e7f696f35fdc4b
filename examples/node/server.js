// An HTTP server that corral runs as its worker:
//
//     corral -w 2 -b 127.0.0.1:8000 --ready delay:500ms -- node examples/node/server.js
//
// It serves on the socket at fd 3 (systemd's socket activation). Node has no
// unix datagram sockets, so it cannot send READY=1: corral counts a worker ready
// 500 ms after it started (--ready delay:500ms). GET / answers with the pid.
'use strict';
const http = require('http');

if (process.env.LISTEN_PID !== String(process.pid) || !(parseInt(process.env.LISTEN_FDS, 10) > 0)) {
  console.error('no sockets passed (run me under corral -- ...)');
  process.exit(3);
}
delete process.env.LISTEN_PID;
delete process.env.LISTEN_FDS;
delete process.env.LISTEN_FDNAMES;

let draining = false;
const server = http.createServer((req, res) => {
  if (draining) res.setHeader('Connection', 'close');
  res.setHeader('Content-Type', 'text/plain');
  res.end(String(process.pid));
});
server.keepAliveTimeout = 5000;
server.listen({ fd: 3 }, () => console.log(`server.js (pid ${process.pid}) serving on fd 3`));

// Graceful stop: stop accepting, answer the next request on each keep-alive
// connection with "Connection: close", close the idle ones after a second.
process.on('SIGTERM', () => {
  draining = true;
  server.close(() => process.exit(0));
  setTimeout(() => server.closeIdleConnections(), 1000).unref();
});
process.on('SIGUSR1', () => {}); // corral forwards USR1 (reopen logs): no logs here
