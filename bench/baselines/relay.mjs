// The seed's Express relay, re-implemented as the benchmark's baseline
// (issue 8): one backend EventSource per browser, each message relayed as
// `data: ${event.data}\n\n`. Run only by bench/ (make bench); never shipped.
import express from 'express';
import { EventSource } from 'eventsource';

const backend = process.env.BACKEND_URL ?? 'http://127.0.0.1:8081';
const app = express();

app.get('/healthz', (_req, res) => res.send('ok'));

app.get('/api/exports/:code/events', (req, res) => {
  res.writeHead(200, {
    'Content-Type': 'text/event-stream',
    'Cache-Control': 'no-cache',
    Connection: 'keep-alive',
  });
  const es = new EventSource(`${backend}/v1/exports/${req.params.code}/events`);
  es.onmessage = (event) => res.write(`data: ${event.data}\n\n`);
  req.on('close', () => es.close());
});

app.listen(Number(process.env.PORT ?? 3001), '127.0.0.1');
