import t from 'tap';
import { Histogram, Registry } from 'prom-client';
import { CountingHistogram } from '../../plugins/metrics.ts';

// The end-to-end latency histogram is counted outside prom-client (plugins/metrics.ts): what a
// Prometheus scrape reads must be exactly what prom-client's own histogram would have written.
t.test('CountingHistogram exports what a prom-client Histogram does', async (t) => {
  const buckets = [0.005, 0.01, 0.25, 1, 30];
  const reference = new Registry();
  const counting = new Registry();
  const histogram = new Histogram({ name: 'x_latency_seconds', help: 'From here to there', buckets, registers: [reference] });
  const ours = new CountingHistogram('x_latency_seconds', 'From here to there', buckets, counting);
  t.equal(await counting.metrics(), await reference.metrics(), 'zero series before the first observation');
  // On a bound (Prometheus' `le` is inclusive), between bounds, above the last, and zero.
  for (const value of [0, 0.005, 0.0051, 0.2, 1, 29.9, 30, 31, 1000]) {
    histogram.observe(value);
    ours.observe(value);
  }
  t.equal(await counting.metrics(), await reference.metrics());
  t.match(await counting.metrics(), /x_latency_seconds_bucket\{le="0\.005"\} 2\n/);
  t.match(await counting.metrics(), /x_latency_seconds_bucket\{le="\+Inf"\} 9\n/);
  ours.reset();
  histogram.reset();
  t.equal(await counting.metrics(), await reference.metrics(), 'reset: no series');
  ours.observe(2);
  histogram.observe(2);
  t.equal(await counting.metrics(), await reference.metrics(), 'observed again after a reset');
});
