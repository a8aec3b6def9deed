/**
 * `@exportstream/client/testing/playwright`: helpers for end-to-end tests of a download UI
 * against the real stack (BFF + backend, with SCENARIOS=on for the scenario fields),
 * driven by Playwright. Every request goes out from the page, so it carries the page's
 * session cookie: the export is the one the page's UI sees.
 *
 * `playwright-core` (or `@playwright/test`, which brings it) is an optional peer
 * dependency: this module imports only its types.
 */
import type { Download, Page } from "playwright-core";
import { ExportError } from "../errors.js";
import { isJobShape, parseJSON } from "../json.js";
import type { ExportRequest, Job, JobStatus } from "../types.js";

export interface PageRequestOptions {
  /** Origin (and path prefix) of the BFF; default `""`: the page's own origin. */
  readonly baseUrl?: string;
}

export interface WaitOptions extends PageRequestOptions {
  /** How long to wait in all; default 10000. */
  readonly timeoutMs?: number;
  /** Between two GETs; default 100. */
  readonly intervalMs?: number;
}

export interface DownloadOptions {
  /** The hex SHA-256 the file's bytes must have, e.g. the job's `file.sha256`. */
  readonly sha256?: string;
  /** How long to wait for the download to start; default 10000. */
  readonly timeoutMs?: number;
}

/** What a download turned out to be. */
export interface DownloadResult {
  readonly download: Download;
  /** The file name the server suggested. */
  readonly filename: string;
  readonly size: number;
  /** Hex SHA-256 of the bytes. */
  readonly sha256: string;
}

interface PageResponse {
  readonly status: number;
  readonly text: string;
}

/** One same-origin request from inside the page (its cookies, its Origin). */
async function pageRequest(page: Page, method: "GET" | "POST", url: string, body?: string): Promise<PageResponse> {
  return page.evaluate(
    async ({ method, url, body }) => {
      const headers: Record<string, string> = { Accept: "application/json" };
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const response = await fetch(url, { method, credentials: "include", headers, ...(body === undefined ? {} : { body }) });
      return { status: response.status, text: await response.text() };
    },
    { method, url, body },
  );
}

/** The job of a 2xx answer; the server's error as an {@link ExportError} otherwise. */
function jobOf(what: string, response: PageResponse): Job {
  const body = parseJSON(response.text);
  if (response.status >= 200 && response.status < 300 && isJobShape(body)) return body as Job;
  const error = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
  const code = typeof error?.code === "string" ? error.code : "BAD_RESPONSE";
  const message = typeof error?.message === "string" ? error.message : response.text.slice(0, 200);
  throw new ExportError(code, `${what}: ${response.status} ${message}`, { httpStatus: response.status });
}

/**
 * `POST /api/exports` from the page: starts an export in the page's session (scenario
 * fields need the backend's SCENARIOS=on) and returns its first snapshot. The page must
 * be on the BFF's origin (or `baseUrl` allowed by its CORS). Rejects with the server's
 * {@link ExportError}, e.g. `400 SCENARIOS_DISABLED`.
 */
export async function startExport(page: Page, request: ExportRequest, options: PageRequestOptions = {}): Promise<Job> {
  const response = await pageRequest(page, "POST", `${options.baseUrl ?? ""}/api/exports`, JSON.stringify(request));
  return jobOf("POST /api/exports", response);
}

/**
 * Polls `GET /api/exports/{code}` from the page until `accept(job)` holds, and returns
 * that job. It reads the server's truth, not your page: assert what the page shows with
 * Playwright's own locators. Rejects when `timeoutMs` passes (with the last job seen),
 * or at once when the GET fails.
 */
export async function waitForJob(page: Page, code: string, accept: (job: Job) => boolean, options: WaitOptions = {}): Promise<Job> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  const url = `${options.baseUrl ?? ""}/api/exports/${encodeURIComponent(code)}`;
  let last: Job | undefined;
  // Bounded by the deadline: one GET per interval at most.
  for (;;) {
    last = jobOf(`GET ${url}`, await pageRequest(page, "GET", url));
    if (accept(last)) return last;
    if (Date.now() >= deadline) break;
    await page.waitForTimeout(options.intervalMs ?? 100);
  }
  throw new Error(`export ${code}: not there within ${timeoutMs} ms; last seen ${last.status} at ${last.progress} %`);
}

/**
 * Waits until the export has `status` (see {@link waitForJob}: it polls the server).
 * Rejects early when the job has ended in another status, as it cannot change any more.
 */
export async function waitForStatus(page: Page, code: string, status: JobStatus, options: WaitOptions = {}): Promise<Job> {
  const ended = ["COMPLETED", "FAILED", "CANCELLED"];
  const job = await waitForJob(page, code, (each) => each.status === status || ended.includes(each.status), options);
  if (job.status !== status) {
    const why = job.error ? ` (${job.error.code}: ${job.error.message})` : "";
    throw new Error(`export ${code}: ended ${job.status}${why}, not ${status}`);
  }
  return job;
}

/**
 * Runs `trigger` (e.g. a click on your Download button) while waiting for the page's next
 * download; resolves when the file is complete, with its name, size and SHA-256. Rejects
 * when no download starts within `timeoutMs`, when it fails (e.g. the server answered
 * 410 GONE), or when `sha256` is given and differs. The browser context needs
 * `acceptDownloads` (Playwright's default).
 */
export async function expectDownload(page: Page, trigger: () => Promise<unknown>, options: DownloadOptions = {}): Promise<DownloadResult> {
  const [download] = await Promise.all([page.waitForEvent("download", { timeout: options.timeoutMs ?? 10_000 }), trigger()]);
  const failure = await download.failure();
  if (failure !== null) throw new Error(`download of ${download.url()} failed: ${failure}`);
  const bytes = await readAll(download);
  const digest = new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", bytes));
  const sha256 = Array.from(digest, (byte) => byte.toString(16).padStart(2, "0")).join("");
  if (options.sha256 !== undefined && sha256 !== options.sha256.toLowerCase()) {
    throw new Error(`download ${download.suggestedFilename()}: SHA-256 ${sha256}, expected ${options.sha256}`);
  }
  return { download, filename: download.suggestedFilename(), size: bytes.byteLength, sha256 };
}

async function readAll(download: Download): Promise<Uint8Array<ArrayBuffer>> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of await download.createReadStream()) chunks.push(chunk as Uint8Array);
  const bytes = new Uint8Array(chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0));
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes;
}
