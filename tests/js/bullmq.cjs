// BullMQ against Quire: a queue, a worker that completes jobs, the queue
// events stream (XREAD BLOCK), job results and a failed job's retry.
const { Queue, Worker, QueueEvents } = require("bullmq");

async function main() {
const port = Number(process.argv[2]);
const connection = { host: "127.0.0.1", port, maxRetriesPerRequest: null };
const name = "jobs";
const queue = new Queue(name, { connection });
const events = new QueueEvents(name, { connection });
events.setMaxListeners(100);
queue.setMaxListeners(100);
await events.waitUntilReady();
const completed = [];
events.on("completed", ({ jobId }) => completed.push(jobId));

let attempts = 0;
const worker = new Worker(
  name,
  async (job) => {
    if (job.name === "flaky" && attempts++ === 0) throw new Error("first try fails");
    return job.data.a + job.data.b;
  },
  { connection },
);

const jobs = [];
for (let i = 0; i < 20; i++) jobs.push(await queue.add("sum", { a: i, b: 1 }));
jobs.push(await queue.add("flaky", { a: 40, b: 2 }, { attempts: 3, backoff: { type: "fixed", delay: 50 } }));
const results = await Promise.all(jobs.map((j) => j.waitUntilFinished(events, 30000)));
const expected = [...Array(20).keys()].map((i) => i + 1).concat([42]);
if (JSON.stringify(results) !== JSON.stringify(expected)) throw new Error("results " + JSON.stringify(results));
const counts = await queue.getJobCounts("completed", "failed", "waiting", "active");
if (counts.completed !== 21 || counts.failed !== 0 || counts.waiting !== 0) throw new Error("counts " + JSON.stringify(counts));
const deadline = Date.now() + 10000;
while (completed.length < 21 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
if (completed.length < 21) throw new Error("completed events " + completed.length);
await worker.close();
await events.close();
await queue.obliterate({ force: true });
await queue.close();
console.log("ok");
}
main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
