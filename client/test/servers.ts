/**
 * Starts the real backend and BFF binaries on free loopback ports for the integration
 * and browser tests, and stops them afterwards.
 *
 * With `EXPORTSTREAM_SCALE=<n>` (n ≥ 2; the `integration-scaled` vitest project sets 2)
 * the same suites run scaled out: a real `redis-server` on a free
 * port, n backends on it sharing one files directory, n BFFs with one session secret
 * (BFF i talks to backend i), and a round-robin HTTP balancer in front of the BFFs
 * whose address is the `bffUrl` the tests use. The balancer alternates each session's
 * requests (keyed by its Cookie header) between the BFFs: consecutive requests of one
 * client, and each new or resumed event stream, reach different BFFs, so every create,
 * read, stream, cancel and download crosses replicas.
 */
import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { accessSync, constants, existsSync, mkdtempSync, rmSync } from "node:fs";
import { Agent, createServer as createHttpServer, request as httpRequest } from "node:http";
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { describe, expect, it } from "vitest";
import { listen } from "./fakes.js";
import type { Browser } from "playwright-core";

export const clientDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const binDir = resolve(process.env["EXPORTSTREAM_BIN_DIR"] ?? join(clientDir, "..", "bin"));
const backendBin = join(binDir, "backend");
const bffBin = join(binDir, "bff");
const demoDir = join(clientDir, "dist", "demo");

/**
 * True when running in CI, where a missing prerequisite is a failure, not a skip. CI is
 * on when the environment variable CI is exactly "true" (what GitHub Actions, GitLab CI
 * and .ci/run set); any other value, "1" included, is not CI. The Go tests apply the
 * same rule (internal/testenv, whose test checks this line).
 */
export const inCI = process.env["CI"] === "true";

/**
 * A running stack to test instead of starting the binaries: the compose integration
 * profile sets it to nginx's address (`http://client`). The backend is then not
 * reachable, so checks of its metrics are skipped.
 */
export const externalBffUrl = process.env["EXPORTSTREAM_BFF_URL"];

/**
 * Replicas of each service when running scaled out (`EXPORTSTREAM_SCALE`), else 1.
 * Ignored against an external stack.
 */
export const replicas = externalBffUrl ? 1 : Math.max(1, Number.parseInt(process.env["EXPORTSTREAM_SCALE"] ?? "1", 10) || 1);
/** True when the suites run against n ≥ 2 backends and BFFs on one Redis. */
export const scaledOut = replicas > 1;

/** redis-server on the PATH (the Debian package; scripts/install-test-deps.sh installs it). */
const redisServerBin = findOnPath("redis-server");

/** What is missing to run the end-to-end tests, as readable lines (empty: all there). */
export function missingPrerequisites(extra: readonly string[] = []): string[] {
  const missing: string[] = [];
  if (externalBffUrl) return missing;
  for (const bin of [backendBin, bffBin]) {
    if (!existsSync(bin)) missing.push(`binary ${bin} (build it with the Makefile, or set EXPORTSTREAM_BIN_DIR)`);
  }
  if (!existsSync(join(demoDir, "index.html"))) missing.push(`demo page ${demoDir} (run npm run build:demo)`);
  if (scaledOut && redisServerBin === undefined) {
    missing.push("redis-server on the PATH, for the scaled-out run (apt-get install redis-server, or scripts/install-test-deps.sh as root)");
  }
  for (const path of extra) if (!existsSync(path)) missing.push(path);
  return missing;
}

/**
 * Skips loudly outside CI; under CI=true the suite must fail instead, so returns the
 * message the caller's failing test throws.
 */
export function reportMissing(suite: string, missing: readonly string[]): string | undefined {
  if (missing.length === 0) return undefined;
  const message = `${suite} needs:\n  - ${missing.join("\n  - ")}`;
  if (!inCI) {
    const bar = "=".repeat(78);
    console.warn(`\n${bar}\nMISSING COMPONENT — skipping: ${message}\n${bar}\n`);
  }
  return message;
}

/**
 * A suite's prerequisites: undefined when none is missing. Otherwise it says why (loudly,
 * see reportMissing) and adds a test that fails under CI=true or is skipped locally, and
 * the suite skips itself (`describe.skipIf(missing !== undefined)`).
 */
export function prerequisites(suite: string, missing: readonly string[]): string | undefined {
  const why = reportMissing(suite, missing);
  if (why !== undefined) {
    describe(`${suite}: prerequisites`, () => {
      if (inCI) it("are present (CI=true makes a missing one a failure)", () => expect.fail(why));
      else it.skip(`are missing, so the suite is skipped: ${why}`, () => {});
    });
  }
  return why;
}

export interface Servers {
  /** BFF origin, e.g. http://127.0.0.1:41234 (scaled out: the balancer in front of the BFFs) */
  readonly bffUrl: string;
  /** The (first) backend's origin; undefined against an external stack. */
  readonly backendUrl: string | undefined;
  /** Every backend's origin (one, or one per replica scaled out; none against an external stack). */
  readonly backendUrls: readonly string[];
  /** What the balancer passed to which BFF so far (empty when there is no balancer). */
  routed(): readonly Routed[];
  /** Everything the processes printed so far, for failure messages. */
  output(): string;
  stop(): Promise<void>;
  /**
   * Kills the (first) BFF with SIGKILL (no clean end of its streams) and resolves once
   * it is gone. Only for a stack of {@link startServers}: rejects against an external one.
   */
  killBff(): Promise<void>;
  /** Starts a new (first) BFF on the same address and arguments; resolves once it is healthy. */
  restartBff(): Promise<void>;
}

/** One request as the scaled-out balancer passed it on. */
interface Routed {
  readonly method: string;
  readonly path: string;
  /** Index of the BFF that got it, in start order. */
  readonly bff: number;
}

/**
 * Starts the backend, then the BFF in front of it, and waits until both are healthy;
 * scaled out (`EXPORTSTREAM_SCALE`), Redis, the replicas and the balancer instead.
 * `env` adds configuration both read (e.g. `WORKERS`, `SSE_RETRY`); `staticDir` is what
 * the BFF serves at `/` (default: the demo page).
 */
export async function startServers(options: { env?: Record<string, string>; staticDir?: string } = {}): Promise<Servers> {
  if (externalBffUrl) {
    const external = (): Promise<void> => Promise.reject(new Error("an external stack's BFF cannot be killed"));
    return {
      bffUrl: externalBffUrl,
      backendUrl: undefined,
      backendUrls: [],
      routed: () => [],
      output: () => "",
      stop: () => Promise.resolve(),
      killBff: external,
      restartBff: external,
    };
  }
  const stack = new Stack();
  // Scenarios on: the suites script exports (failAt, …).
  const env = { ...process.env, SCENARIOS: "on", ...options.env, DATA_DIR: join(stack.workDir, "data") };
  try {
    const backendUrls: string[] = [];
    const backendArgs: string[] = [];
    if (scaledOut) backendArgs.push("-redis-url", await stack.redis());
    for (let i = 0; i < replicas; i++) {
      backendUrls.push(await stack.start(name("backend", i), backendBin, backendArgs, env, 2));
    }
    const bffUrls: string[] = [];
    const sessionSecret = randomBytes(32).toString("hex"); // one secret: any BFF serves any session
    for (let i = 0; i < replicas; i++) {
      const args = ["-backend-url", backendUrls[i]!, "-static-dir", options.staticDir ?? demoDir];
      if (scaledOut) args.push("-session-secret", sessionSecret);
      bffUrls.push(await stack.start(name("bff", i), bffBin, args, env, 1));
    }
    const bffUrl = scaledOut ? await stack.balance(bffUrls) : bffUrls[0]!;
    return stack.servers(bffUrl, backendUrls);
  } catch (error) {
    await stack.stop();
    throw error;
  }
}

/**
 * Starts only the BFF, in front of a backend of the test's own (a scripted one);
 * scaled out, n BFFs with one session secret behind the balancer.
 */
export async function startBffAgainst(backendUrl: string): Promise<Servers> {
  const stack = new Stack();
  try {
    const bffUrls: string[] = [];
    const sessionSecret = randomBytes(32).toString("hex");
    for (let i = 0; i < replicas; i++) {
      const args = ["-backend-url", backendUrl, "-static-dir", demoDir];
      if (scaledOut) args.push("-session-secret", sessionSecret);
      bffUrls.push(await stack.start(name("bff", i), bffBin, args, process.env, 1));
    }
    const bffUrl = scaledOut ? await stack.balance(bffUrls) : bffUrls[0]!;
    return stack.servers(bffUrl, [backendUrl]);
  } catch (error) {
    await stack.stop();
    throw error;
  }
}

function name(service: string, i: number): string {
  return scaledOut ? `${service}${i + 1}` : service;
}

/**
 * The processes of one test stack and its work directory. Stopped in layers, front
 * first: balancer, BFFs, backends (which hand running jobs back to Redis on SIGTERM),
 * then Redis.
 */
class Stack {
  readonly workDir = mkdtempSync(join(tmpdir(), "exportstream-test-"));
  readonly logs: string[] = [];
  /** Processes by layer: 0 Redis, 1 BFFs, 2 backends (stopped 1, 2, 0). */
  readonly #layers: ChildProcess[][] = [[], [], []];
  #closeBalancer: (() => Promise<void>) | undefined;
  #routed: Routed[] = [];
  /** How the first BFF was started, to start it again on its address after a kill. */
  #firstBff: { label: string; bin: string; args: string[]; env: NodeJS.ProcessEnv; url: string; child: ChildProcess } | undefined;

  /** Runs a service on a free port (or url) and waits for its /healthz; returns its origin. */
  async start(label: string, bin: string, args: string[], env: NodeJS.ProcessEnv, layer: number, url?: string): Promise<string> {
    url ??= `http://127.0.0.1:${await freePort()}`;
    const child = run(label, bin, ["-addr", url.slice("http://".length), ...args], this.workDir, env, this.logs);
    this.#layers[layer]!.push(child);
    if (layer === 1 && (this.#firstBff === undefined || this.#firstBff.url === url)) {
      this.#firstBff = { label, bin, args, env, url, child };
    }
    await waitHealthy(`${url}/healthz`, child, this.logs);
    return url;
  }

  killBff(): Promise<void> {
    const doomed = this.#firstBff?.child;
    if (doomed === undefined || doomed.exitCode !== null || doomed.signalCode !== null) {
      return Promise.reject(new Error("the BFF is not running"));
    }
    return new Promise((done) => {
      doomed.once("exit", () => done());
      doomed.kill("SIGKILL");
    });
  }

  async restartBff(): Promise<void> {
    const bff = this.#firstBff;
    if (bff === undefined) throw new Error("no BFF was started");
    await this.start(bff.label, bff.bin, bff.args, bff.env, 1, bff.url);
  }

  /** Runs redis-server on a free port (no persistence: the tests need none); returns its URL. */
  async redis(): Promise<string> {
    if (redisServerBin === undefined) throw new Error("redis-server is not on the PATH");
    const port = await freePort();
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    args.push("--dir", this.workDir, "--daemonize", "no", "--loglevel", "warning");
    const child = run("redis", redisServerBin, args, this.workDir, process.env, this.logs);
    this.#layers[0]!.push(child);
    await waitRedis(port, child, this.logs);
    return `redis://127.0.0.1:${port}/0`;
  }

  /** Starts the round-robin balancer in front of targets; returns its origin. */
  async balance(targets: readonly string[]): Promise<string> {
    const { url, close } = await startBalancer(targets, (routed) => this.#routed.push(routed));
    this.#closeBalancer = close;
    return url;
  }

  servers(bffUrl: string, backendUrls: readonly string[]): Servers {
    return {
      bffUrl,
      backendUrl: backendUrls[0],
      backendUrls,
      routed: () => [...this.#routed],
      output: () => this.logs.join(""),
      stop: () => this.stop(),
      killBff: () => this.killBff(),
      restartBff: () => this.restartBff(),
    };
  }

  async stop(): Promise<void> {
    await this.#closeBalancer?.();
    for (const layer of [1, 2, 0]) await Promise.all(this.#layers[layer]!.map(terminate));
    rmSync(this.workDir, { recursive: true, force: true });
  }
}

/** Headers that belong to one connection, not passed on by the balancer (RFC 9110 7.6.1). */
const hopByHop = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"]);

function endToEnd(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [key, value] of Object.entries(headers)) if (value !== undefined && !hopByHop.has(key)) out[key] = value;
  return out;
}

/**
 * Forwards req to target (on agent) and its answer back, as a proxy does: end-to-end
 * headers only, the answer's head flushed at once (an event stream is not held), either
 * side's failure ends the other. `hold` may take an answer instead (read, never sent).
 */
export function forwardRequest(
  req: IncomingMessage,
  res: ServerResponse,
  target: URL,
  agent: Agent,
  hold: (answer: IncomingMessage) => boolean = () => false,
): void {
  const upstream = httpRequest(
    { agent, host: target.hostname, port: target.port, method: req.method, path: req.url, headers: endToEnd(req.headers) },
    (answer) => {
      if (hold(answer)) {
        answer.resume();
        return;
      }
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, endToEnd(answer.headers));
      res.flushHeaders();
      answer.pipe(res);
      answer.on("error", () => res.destroy());
    },
  );
  upstream.on("error", () => {
    if (!res.headersSent) res.writeHead(502).end();
    else res.destroy();
  });
  res.on("close", () => {
    if (!res.writableFinished) upstream.destroy();
  });
  req.pipe(upstream);
}

/**
 * A tiny HTTP load balancer: each request goes to the next target, round robin per
 * session (the Cookie header; requests without one share a counter), so one client's
 * consecutive requests and streams alternate between the targets. Responses stream
 * through unbuffered (event streams pass event by event); a client that goes away
 * closes its upstream request. Host and every end-to-end header pass unchanged, so
 * the BFFs see the balancer's origin, as behind nginx.
 */
async function startBalancer(
  targets: readonly string[],
  observe: (routed: Routed) => void,
): Promise<{ url: string; close: () => Promise<void> }> {
  const agent = new Agent({ keepAlive: true });
  const next = new Map<string, number>();
  let anonymous = 0;
  const server = createHttpServer((req, res) => {
    const cookie = req.headers.cookie;
    let turn: number;
    if (cookie === undefined) {
      turn = anonymous++;
    } else {
      turn = next.get(cookie) ?? anonymous++;
      next.set(cookie, turn + 1);
    }
    const bff = turn % targets.length;
    const target = new URL(targets[bff]!);
    observe({ method: req.method ?? "GET", path: (req.url ?? "/").split("?")[0]!, bff });
    forwardRequest(req, res, target, agent);
  });
  const { url, close } = await listen(server);
  return {
    url,
    close: async () => {
      await close();
      agent.destroy();
    },
  };
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

function run(
  name: string,
  bin: string,
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv,
  logs: string[],
): ChildProcess {
  const child = spawn(bin, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  const collect = (chunk: Buffer): void => {
    logs.push(`[${name}] ${chunk.toString()}`);
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  child.on("error", (error) => logs.push(`[${name}] spawn error: ${error.message}\n`));
  return child;
}

/** Polls a health URL until 200; bounded, and fails fast if the process exits. */
async function waitHealthy(url: string, child: ChildProcess, logs: string[]): Promise<void> {
  const deadline = Date.now() + 15_000;
  let last = "no answer yet";
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`process exited (${child.exitCode ?? child.signalCode}) before ${url} was healthy:\n${logs.join("")}`);
    }
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (response.status === 200) return;
      last = `HTTP ${response.status}`;
    } catch (error) {
      last = String(error);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} not healthy after 15 s (${last}):\n${logs.join("")}`);
}

function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((done) => {
    const force = setTimeout(() => child.kill("SIGKILL"), 5_000);
    child.once("exit", () => {
      clearTimeout(force);
      done();
    });
    child.kill("SIGTERM");
  });
}

/** Waits until redis-server answers PING; bounded, and fails fast if it exits. */
async function waitRedis(port: number, child: ChildProcess, logs: string[]): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`redis-server exited (${child.exitCode ?? child.signalCode}):\n${logs.join("")}`);
    }
    const pong = await new Promise<boolean>((answered) => {
      const socket = connect(port, "127.0.0.1");
      socket.setTimeout(1_000, () => socket.destroy());
      socket.once("connect", () => socket.write("PING\r\n"));
      socket.once("data", (data) => {
        answered(data.toString().startsWith("+PONG"));
        socket.destroy();
      });
      socket.once("error", () => answered(false));
      socket.once("close", () => answered(false));
    });
    if (pong) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`redis-server on port ${port} did not answer PING within 10 s:\n${logs.join("")}`);
}

/** The first executable called name on the PATH, or undefined. */
function findOnPath(name: string): string | undefined {
  for (const dir of (process.env["PATH"] ?? "").split(delimiter)) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Debian's Chromium, or CHROMIUM_PATH: the browser tests drive it with playwright-core. */
const chromiumPath = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";

/** missingPrerequisites with Chromium, saying how to get it. */
export function missingForBrowser(): string[] {
  return missingPrerequisites([chromiumPath]).map((item) =>
    item === chromiumPath ? `Chromium at ${chromiumPath} (apt-get install chromium, or set CHROMIUM_PATH)` : item,
  );
}

/** Chromium as every browser test runs it: headless, no sandbox (root), nothing fetched from the network. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumPath,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** A job's file as the BFF serves it: the response and the SHA-256 of its bytes. */
export async function fetchFile(
  fetchImpl: typeof globalThis.fetch,
  bffUrl: string,
  job: { readonly file?: { readonly url: string } | undefined },
): Promise<{ response: Response; bytes: Buffer; sha256: string }> {
  if (!job.file) throw new Error("the job has no file");
  const response = await fetchImpl(`${bffUrl}${job.file.url}`);
  const bytes = Buffer.from(await response.arrayBuffer());
  return { response, bytes, sha256: createHash("sha256").update(bytes).digest("hex") };
}
