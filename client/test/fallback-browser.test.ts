/**
 * The fallback to polling through real hostile proxies, in front of the real BFF and
 * backend: the demo page in Chromium behind
 * - nginx with `proxy_buffering on` (and the BFF's `X-Accel-Buffering: no` ignored, as a
 *   proxy or antivirus that buffers whole responses does): the events never arrive;
 * - a proxy that holds the response head of every event stream (passing everything
 *   else): the EventSource never opens;
 * the page falls back to polling, shows it, finishes the export and downloads the file.
 * With `proxy_buffering off` it stays on SSE. And in Node, through the holding proxy
 * switched off mid-export, the client goes back to SSE and stops polling.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { Agent, createServer } from "node:http";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createExportClient } from "../src/index.js";
import type { FetchLike, Job, TransportKind } from "../src/index.js";
import { cookieFetch, countingEventSource, listen } from "./fakes.js";
import { forwardRequest, freePort, launchChromium, missingForBrowser, prerequisites, startServers } from "./servers.js";
import type { Servers } from "./servers.js";

const nginxBin = findExecutable("nginx", ["/usr/sbin/nginx"]);
const missing = prerequisites("fallback browser tests (Chromium, nginx, real backend + BFF)", [
  ...missingForBrowser(),
  ...(nginxBin === undefined ? ["nginx (apt-get install nginx-light, or scripts/install-test-deps.sh as root)"] : []),
]);

type Mode = "per-job" | "multiplex";

describe.skipIf(missing !== undefined)("fallback to polling through hostile proxies", () => {
  let servers: Servers;
  let browser: Browser;
  const cleanups: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    servers = await startServers({ env: { WORKERS: "8" } });
    browser = await launchChromium();
  });

  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    await browser?.close();
    await servers?.stop();
  });

  /**
   * Opens the demo through `origin` in a fresh context, starts an export that outlasts
   * the 5 s bound, and follows its item until it ends; returns every transport the
   * item showed, its requests, and the download's SHA-256 against the job's.
   */
  async function exportThrough(
    origin: string,
    mode: Mode,
    durationMs: number,
  ): Promise<{ transports: Set<string>; connections: Set<string>; polls: number; pollerLoads: number; page: Page }> {
    const context = await browser.newContext({ acceptDownloads: true });
    const page = await context.newPage();
    const requests: string[] = [];
    const pageErrors: string[] = [];
    page.on("pageerror", (error) => pageErrors.push(error.message));
    page.on("request", (request) => requests.push(`${request.method()} ${new URL(request.url()).pathname}`));
    await page.goto(`${origin}/?mode=${mode}`);
    expect(await page.getByTestId(`mode-${mode}`).isChecked()).toBe(true);
    const download = page.waitForEvent("download", { timeout: durationMs + 30_000 });

    await page.getByTestId("rows-input").fill("5000");
    await page.getByTestId("duration-input").fill(String(durationMs));
    await page.getByTestId("start-button").click();
    const item = page.getByTestId("export-item").first();
    await expect.poll(() => item.getAttribute("data-code")).toMatch(/^[0-9a-f-]{36}$/);
    const code = (await item.getAttribute("data-code")) ?? "";

    // Every transport the item shows until the export ends (sampled; a switch lasts seconds).
    const transports = new Set<string>();
    /** "transport connection-text" as shown together, while the export runs. */
    const connections = new Set<string>();
    const deadline = Date.now() + durationMs + 30_000;
    let status: string | null = null;
    while (Date.now() < deadline && status !== "COMPLETED") {
      const [shown, now, connection] = await Promise.all([
        item.getAttribute("data-transport"),
        item.getAttribute("data-status"),
        item.getByTestId("connection").textContent(),
      ]);
      if (shown !== null) transports.add(shown);
      if (shown !== null && now === "IN_PROGRESS") connections.add(`${shown} ${connection ?? ""}`);
      status = now;
      if (status === "FAILED" || status === "CANCELLED" || status === "ERROR") break;
      await page.waitForTimeout(100);
    }
    expect(status).toBe("COMPLETED");

    // The file, downloaded in the tab, is the job's: its SHA-256 as the server states it.
    const file = await download;
    const sha256 = createHash("sha256").update(readFileSync(await file.path())).digest("hex");
    const answer = await context.request.get(`${origin}/api/exports/${code}`);
    expect(answer.status()).toBe(200);
    const job = (await answer.json()) as Job;
    expect(job.status).toBe("COMPLETED");
    expect(sha256).toBe(job.file?.sha256);
    expect(await item.getAttribute("data-sha256")).toBe(job.file?.sha256);
    expect(pageErrors).toEqual([]);

    const pollPath = mode === "per-job" ? `GET /api/exports/${code}` : "GET /api/exports";
    const polls = requests.filter((request) => request === pollPath).length - (mode === "multiplex" ? 1 : 0); // the list on load
    // The poller is a chunk of its own (client/src/polling.ts): fetched when a stream gives way, not before.
    const pollerLoads = requests.filter((request) => /^GET \/chunks\/polling-[^/]+\.js$/.test(request)).length;
    cleanups.push(() => context.close());
    return { transports, connections, polls, pollerLoads, page };
  }

  it.each<Mode>(["multiplex", "per-job"])(
    "%s: behind nginx with proxy_buffering on the page falls back to polling, finishes and downloads the export",
    async (mode) => {
      const nginx = await startNginx(servers.bffUrl, true);
      cleanups.push(nginx.stop);
      const { transports, connections, polls, pollerLoads, page } = await exportThrough(nginx.url, mode, 10_000);
      expect(transports).toEqual(new Set(["sse", "polling"]));
      expect(polls).toBeGreaterThanOrEqual(2);
      expect(pollerLoads).toBe(1);
      expect(await page.getByTestId("export-item").first().getByTestId("transport").textContent()).toBe("polling");
      // While polling the row never says "live": that is for a stream (and it may wait for the first GET).
      expect(connections).toContain("polling checked every few s");
      expect(connections).not.toContain("polling live");
      await page.context().close();
    },
  );

  it("multiplex: behind nginx with proxy_buffering off the page stays on SSE and never polls", async () => {
    const nginx = await startNginx(servers.bffUrl, false);
    cleanups.push(nginx.stop);
    const { transports, polls, pollerLoads, page } = await exportThrough(nginx.url, "multiplex", 8_000);
    expect(transports).toEqual(new Set(["sse"]));
    expect(polls).toBe(0);
    expect(pollerLoads).toBe(0);
    expect(await page.getByTestId("export-item").first().getByTestId("transport").textContent()).toBe("SSE");
    await page.context().close();
  });

  it.each<Mode>(["per-job", "multiplex"])(
    "%s: behind a proxy that holds event streams' response heads the page falls back to polling, finishes and downloads",
    async (mode) => {
      const proxy = await startHoldingProxy(servers.bffUrl);
      cleanups.push(proxy.close);
      const { transports, polls, page } = await exportThrough(proxy.url, mode, 10_000);
      expect(proxy.held()).toBeGreaterThanOrEqual(1);
      expect(transports).toEqual(new Set(["sse", "polling"]));
      expect(polls).toBeGreaterThanOrEqual(2);
      await page.context().close();
    },
  );

  it.each<Mode>(["per-job", "multiplex"])(
    "%s in Node: polling while the proxy holds the stream, back to SSE once it lets streams through, and no more polling",
    async (mode) => {
      const proxy = await startHoldingProxy(servers.bffUrl);
      cleanups.push(proxy.close);
      const fetchImpl = cookieFetch();
      const client = createExportClient({
        baseUrl: proxy.url,
        fetch: fetchImpl as FetchLike,
        EventSource: countingEventSource(fetchImpl).EventSource,
        mode,
        fallback: { firstMessageMs: 1_000, retrySseMs: 1_000, maxRetrySseMs: 2_000 },
      });
      const started = await client.start({ rows: 5000, durationMs: 12_000 });
      const transports: TransportKind[] = [];
      const ended = new Promise<Job>((done, fail) => {
        client.subscribe(
          started.code,
          (event) => {
            if (event.type === "error") fail(event.error);
            else if (event.job.status === "COMPLETED") done(event.job);
          },
          { onTransport: (kind) => transports.push(kind) },
        );
      });
      await expect.poll(() => transports, { timeout: 5_000 }).toEqual(["sse", "polling"]);
      expect(client.stats().transport).toBe("polling");
      await expect.poll(() => proxy.polls(), { timeout: 5_000 }).toBeGreaterThanOrEqual(1);

      proxy.letThrough();
      await expect.poll(() => transports, { timeout: 10_000 }).toEqual(["sse", "polling", "sse"]);
      expect(client.stats().transport).toBe("sse");
      const polled = proxy.polls();
      const job = await ended;
      expect(job.file?.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(proxy.polls()).toBe(polled); // polling stopped when SSE came back
    },
  );
});

/** nginx on a free 127.0.0.1 port in front of `upstream`, everything in a temp dir. */
async function startNginx(upstream: string, buffering: boolean): Promise<{ url: string; stop: () => Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), "exportstream-nginx-"));
  const port = await freePort();
  const temp = (name: string): string => `${name}_temp_path ${join(dir, name)};`;
  // Big buffers: with nginx's default 4-8 KB ones a busy stream fills a buffer within a
  // second or two and comes through late but live; this is a proxy that holds it all.
  const conf = `
worker_processes 1;
pid ${join(dir, "nginx.pid")};
error_log ${join(dir, "error.log")} warn;
events { worker_connections 256; }
http {
  access_log off;
  ${temp("client_body")} ${temp("proxy")} ${temp("fastcgi")} ${temp("uwsgi")} ${temp("scgi")}
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass ${upstream};
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header Connection "";
      proxy_buffering ${buffering ? "on" : "off"};
      # A proxy that buffers does not ask the upstream: without this the BFF's
      # X-Accel-Buffering: no would turn buffering off again.
      proxy_ignore_headers X-Accel-Buffering;
      proxy_buffer_size 64k;
      proxy_buffers 16 64k;
      proxy_busy_buffers_size 128k;
      proxy_read_timeout 300s;
    }
  }
}
`;
  writeFileSync(join(dir, "nginx.conf"), conf);
  const logs: string[] = [];
  const child = spawn(nginxBin!, ["-p", dir, "-e", join(dir, "error.log"), "-c", join(dir, "nginx.conf"), "-g", "daemon off;"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (chunk: Buffer) => logs.push(chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => logs.push(chunk.toString()));
  const url = `http://127.0.0.1:${port}`;
  await waitListening(url, child, logs);
  return {
    url,
    stop: async () => {
      await stop(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A proxy that passes every request and response, except that it never sends the head
 * (nor anything after it) of a `text/event-stream` response while holding: the browser
 * waits for headers that do not come. `letThrough()` passes later streams unchanged.
 * It counts the streams it held and the snapshot GETs it passed.
 */
async function startHoldingProxy(upstream: string): Promise<{ url: string; close: () => Promise<void>; held: () => number; polls: () => number; letThrough: () => void }> {
  const target = new URL(upstream);
  const agent = new Agent({ keepAlive: true });
  let holding = true;
  let held = 0;
  let polls = 0;
  const server = createServer((req, res) => {
    if (req.method === "GET" && /^\/api\/exports(\/[^/]+)?$/.test((req.url ?? "/").split("?")[0]!)) polls += 1;
    forwardRequest(req, res, target, agent, (answer) => {
      if (!holding || !String(answer.headers["content-type"] ?? "").startsWith("text/event-stream")) return false;
      held += 1; // read and dropped: the client sees nothing at all
      return true;
    });
  });
  const listening = await listen(server);
  return {
    url: listening.url,
    close: async () => {
      await listening.close();
      agent.destroy();
    },
    held: () => held,
    polls: () => polls,
    letThrough: () => {
      holding = false;
    },
  };
}

/** Waits until `url` answers (any status); bounded, and fails fast if the process exits. */
async function waitListening(url: string, child: ChildProcess, logs: string[]): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`nginx exited (${child.exitCode ?? child.signalCode}):\n${logs.join("")}`);
    }
    try {
      await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1_000) });
      return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nginx at ${url} did not answer within 10 s:\n${logs.join("")}`);
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const force = setTimeout(() => child.kill("SIGKILL"), 5_000);
    child.once("exit", () => {
      clearTimeout(force);
      done();
    });
    child.kill("SIGTERM"); // nginx: fast shutdown (held streams would keep a graceful one waiting)
  });
}

/** `name` on the PATH, else the first of `also` that exists (Debian's nginx is in /usr/sbin). */
function findExecutable(name: string, also: readonly string[]): string | undefined {
  const candidates = [...(process.env["PATH"] ?? "").split(delimiter).filter(Boolean).map((dir) => join(dir, name)), ...also];
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}
