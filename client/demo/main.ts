/**
 * The demo page: start exports, watch each one's progress live, get the file downloaded
 * in this tab when it completes — and compare the three ways of following them (SSE per
 * job, SSE multiplexed, the 2 s polling SSE replaces) by the page's own network counters.
 * Plain DOM on top of the library; `fetch` and `EventSource` are injected, instrumented.
 */
import { createExportClient, ExportError, notifyWhenHidden } from "../src/index.js";
import type { ConnectionState, ExportClient, ExportRequest, FetchLike, Job, StreamMode, TransportKind } from "../src/index.js";
import { isScenarioName, RELAY_FAULT, SCENARIOS } from "./scenarios.js";

type PageMode = StreamMode | "polling";
const MODES: readonly PageMode[] = ["per-job", "multiplex", "polling"];
const POLL_INTERVAL_MS = 2_000;
const BURST = 8;

const MODE_NOTES: Record<PageMode, string> = {
  "per-job":
    "One EventSource per export. On HTTP/1.1 a browser opens at most 6 connections per origin: a 7th export waits.",
  multiplex: "One EventSource for the whole tab (/api/events), however many exports.",
  polling: "The old way: GET /api/exports/{code} every 2 s per running export. Compare the counters.",
};

// ---------------------------------------------------------------------------------------
// Counters: every request, every byte of every body and event, every connection.

interface Counters {
  requests: number;
  bytes: number;
  inflight: number;
  delays: number[];
}
let counters: Counters = { requests: 0, bytes: 0, inflight: 0, delays: [] };
const encoder = new TextEncoder();
const liveSources = new Set<EventSource>();

const countingFetch: FetchLike = async (url, init) => {
  counters.requests += 1;
  counters.inflight += 1;
  const mine = counters;
  try {
    const response = await fetch(url, init);
    const text = await response.text();
    mine.bytes += encoder.encode(text).length;
    return { ok: response.ok, status: response.status, statusText: response.statusText, text: () => Promise.resolve(text) };
  } finally {
    mine.inflight -= 1;
  }
};

/** The browser's EventSource, counting each (re)connection and the bytes of each event. */
class CountingEventSource extends EventSource {
  constructor(url: string | URL, init?: EventSourceInit) {
    super(url, init);
    counters.requests += 1;
    liveSources.add(this);
    let dropped = false;
    this.addEventListener("error", () => {
      if (this.readyState === EventSource.CLOSED) liveSources.delete(this);
      else dropped = true;
    });
    this.addEventListener("open", () => {
      if (dropped) counters.requests += 1; // the browser reconnected: one more request
      dropped = false;
    });
    this.addEventListener("message", (event) => {
      // id: …\ndata: …\n\n — what the stream carried for this event.
      counters.bytes += encoder.encode(`id: ${event.lastEventId}\ndata: ${String(event.data)}\n\n`).length;
    });
  }

  override close(): void {
    liveSources.delete(this);
    super.close();
  }
}

function resetCounters(): void {
  counters = { requests: 0, bytes: 0, inflight: 0, delays: [] };
}

// ---------------------------------------------------------------------------------------
// Clients: one per SSE mode; polling uses the per-job client's plain GET.

const clients: Record<StreamMode, ExportClient> = {
  "per-job": createExportClient({ mode: "per-job", fetch: countingFetch, EventSource: CountingEventSource }),
  multiplex: createExportClient({ mode: "multiplex", fetch: countingFetch, EventSource: CountingEventSource }),
};

// The "relay gives up" scenario's exports are followed by clients that ask the BFF for
// the fault on their streams (demos and tests only).
const faultClients: Record<StreamMode, ExportClient> = {
  "per-job": createExportClient({ mode: "per-job", fetch: countingFetch, EventSource: CountingEventSource, fault: RELAY_FAULT }),
  multiplex: createExportClient({ mode: "multiplex", fetch: countingFetch, EventSource: CountingEventSource, fault: RELAY_FAULT }),
};
const faulted = new Set<string>();

let mode: PageMode = readMode();
const api = (): ExportClient => clients[mode === "polling" ? "per-job" : mode];
/** The client that follows `code`: the fault's for the "relay gives up" exports. */
const clientFor = (code: string): ExportClient => (faulted.has(code) ? faultClients : clients)[mode === "polling" ? "per-job" : mode];

interface WatchCallbacks {
  /** `etaMs`: the client's estimate of the time left (SSE modes only). */
  job(job: Job, etaMs?: number): void;
  error(error: ExportError): void;
  connection(state: ConnectionState | "polling"): void;
  /** How the client gets the events: SSE, or its fallback to polling (a proxy in the way). */
  transport(kind: TransportKind): void;
}

/** Follows one export the current mode's way; returns the function that stops. */
function watch(code: string, callbacks: WatchCallbacks): () => void {
  if (mode !== "polling") {
    return clientFor(code).subscribe(
      code,
      (event) => (event.type === "snapshot" ? callbacks.job(event.job, event.etaMs) : callbacks.error(event.error)),
      { onConnection: callbacks.connection, onTransport: callbacks.transport },
    );
  }
  callbacks.connection("polling");
  const poller = new Poller(code, callbacks);
  return () => poller.stop();
}

/** What SSE replaces: asks for one export every 2 s until it has ended (or is gone). */
class Poller {
  readonly #code: string;
  readonly #callbacks: WatchCallbacks;
  #stopped = false;
  #timer: ReturnType<typeof setTimeout>;

  constructor(code: string, callbacks: WatchCallbacks) {
    this.#code = code;
    this.#callbacks = callbacks;
    this.#timer = this.#schedule();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }

  #schedule(): ReturnType<typeof setTimeout> {
    return setTimeout(() => void this.#poll(), POLL_INTERVAL_MS);
  }

  async #poll(): Promise<void> {
    try {
      const job = await api().get(this.#code);
      if (this.#stopped) return;
      this.#callbacks.job(job);
      if (isEnded(job)) return;
    } catch (error) {
      if (this.#stopped) return;
      if (error instanceof ExportError && error.httpStatus === 404) {
        this.#callbacks.error(error);
        return;
      }
    }
    this.#timer = this.#schedule();
  }
}

// ---------------------------------------------------------------------------------------
// The page.

const form = element<HTMLFormElement>("#export-form");
const [rowsInput, durationInput, failAtInput, autoDownload] = ["#rows", "#duration", "#fail-at", "#auto-download"].map(
  (selector) => element<HTMLInputElement>(selector),
) as [HTMLInputElement, HTMLInputElement, HTMLInputElement, HTMLInputElement];
const [startButton, burstButton] = ["start-button", "burst-button"].map((id) => byTestId<HTMLButtonElement>(id)) as [
  HTMLButtonElement,
  HTMLButtonElement,
];
const formError = byTestId<HTMLParagraphElement>("form-error");
const scenarioSelect = element<HTMLSelectElement>("#scenario");
const scenarioNote = byTestId("scenario-note");
for (const [name, scenario] of Object.entries(SCENARIOS)) scenarioSelect.add(new Option(scenario.label, name));
const showScenarioNote = (): void => {
  scenarioNote.textContent = isScenarioName(scenarioSelect.value) ? SCENARIOS[scenarioSelect.value].note : "";
};
scenarioSelect.addEventListener("change", showScenarioNote);
showScenarioNote();
// The clients notify once permitted (notifyWhenHidden); asking is the app's part, on a click.
for (const each of Object.values(clients)) notifyWhenHidden(each);
const notifyButton = byTestId<HTMLButtonElement>("notify-button");
if (typeof Notification !== "undefined" && Notification.permission === "default") {
  notifyButton.hidden = false;
  notifyButton.addEventListener("click", () => void Notification.requestPermission().then(() => (notifyButton.hidden = true)));
}
const list = byTestId<HTMLOListElement>("export-list");
const emptyState = byTestId<HTMLParagraphElement>("empty-state");
const itemTemplate = element<HTMLTemplateElement>("#export-item-template");
const modeNote = byTestId<HTMLParagraphElement>("mode-note");
/** The counters' cells: stat-requests, stat-bytes, … */
const stat = Object.fromEntries(
  (["requests", "bytes", "connections", "waiting", "tabs", "delay", "delay-note"] as const).map((name) => [name, byTestId(`stat-${name}`)]),
) as Record<"requests" | "bytes" | "connections" | "waiting" | "tabs" | "delay" | "delay-note", HTMLElement>;

const numberFormat = new Intl.NumberFormat("en-US");
const views = new Map<string, ExportView>();

form.addEventListener("submit", (event) => {
  event.preventDefault();
  void startExports(1);
});
burstButton.addEventListener("click", () => void startExports(BURST));
for (const radio of document.querySelectorAll<HTMLInputElement>('input[name="mode"]')) {
  radio.checked = radio.value === mode;
  radio.addEventListener("change", () => {
    if (radio.checked) switchMode(radio.value as PageMode);
  });
}
showModeNote();
setInterval(renderCounters, 250);
void restore();

/** The session's exports, after a reload too (`GET /api/exports`). */
async function restore(): Promise<void> {
  try {
    const jobs = await api().list();
    for (const job of [...jobs].reverse()) add(job, { live: false });
    spotlight.follow(jobs[0]?.code);
  } catch (error) {
    showFormError(`Could not load this session's exports: ${describe(error)}`);
  }
}

async function startExports(count: number): Promise<void> {
  const request = readRequest();
  if (typeof request === "string") {
    showFormError(request);
    return;
  }
  showFormError(undefined);
  startButton.disabled = burstButton.disabled = true;
  try {
    // All POSTs first, then the watches: on HTTP/1.1 per-job streams would otherwise
    // take the six connections and leave the next POST waiting.
    const results = await Promise.allSettled(Array.from({ length: count }, () => api().start(request)));
    if (scenarioSelect.value === "relay-gives-up") for (const result of results) if (result.status === "fulfilled") faulted.add(result.value.code);
    const failed = results.find((result) => result.status === "rejected");
    if (failed) showFormError(describe(failed.reason));
    for (const result of results) if (result.status === "fulfilled") add(result.value, { live: true });
    const newest = [...results].reverse().find((result) => result.status === "fulfilled");
    if (newest?.status === "fulfilled") spotlight.follow(newest.value.code);
  } finally {
    startButton.disabled = burstButton.disabled = false;
  }
}

function add(job: Job, { live }: { live: boolean }): void {
  if (views.has(job.code)) return;
  const view = new ExportView(job, live);
  views.set(job.code, view);
  list.prepend(view.root);
  emptyState.hidden = true;
  view.follow();
}

function remove(code: string): void {
  views.get(code)?.dispose();
  views.delete(code);
  emptyState.hidden = views.size > 0;
  if (spotlight.code === code) spotlight.follow([...views.keys()].at(-1));
}

function switchMode(next: PageMode): void {
  if (next === mode) return;
  for (const view of views.values()) view.stop();
  spotlight.stop();
  mode = next;
  const url = new URL(location.href);
  url.searchParams.set("mode", mode);
  history.replaceState(null, "", url);
  resetCounters();
  showModeNote();
  for (const view of views.values()) view.follow();
  spotlight.follow(spotlight.code);
}

function readMode(): PageMode {
  const asked = new URLSearchParams(location.search).get("mode");
  return MODES.find((candidate) => candidate === asked) ?? "multiplex";
}

function showModeNote(): void {
  modeNote.textContent = MODE_NOTES[mode];
  document.body.dataset["mode"] = mode;
}

function renderCounters(): void {
  let open = 0;
  let waiting = 0;
  for (const source of liveSources) {
    if (source.readyState === EventSource.OPEN) open += 1;
    else if (source.readyState === EventSource.CONNECTING) waiting += 1;
  }
  stat.requests.textContent = numberFormat.format(counters.requests);
  stat.bytes.textContent = formatBytes(counters.bytes);
  stat.connections.textContent = String(open + counters.inflight);
  stat.waiting.textContent = waiting > 0 ? `${waiting} waiting to connect` : "";
  showTabs();
  const { delays } = counters;
  if (delays.length === 0) {
    stat.delay.textContent = "–";
    stat["delay-note"].textContent = "server finished → page shows it";
  } else {
    const last = delays.at(-1) ?? 0;
    const average = delays.reduce((sum, each) => sum + each, 0) / delays.length;
    stat.delay.textContent = formatMs(last);
    stat["delay-note"].textContent = `last · avg ${formatMs(average)} over ${delays.length}`;
  }
  document.body.dataset["requests"] = String(counters.requests);
  document.body.dataset["openConnections"] = String(open + counters.inflight);
  document.body.dataset["waitingConnections"] = String(waiting);
}

/** Multiplex mode shares one stream among this browser's tabs: how many, and who holds it. */
function showTabs(): void {
  const { tabs, leader, connections } = clients.multiplex.stats();
  const text = tabs > 1 ? `shared by ${tabs} tabs · ${leader ? "held by this tab" : "held by another tab"}` : connections > 0 ? "this tab only" : "";
  stat.tabs.textContent = mode === "multiplex" ? text : "";
  document.body.dataset["tabs"] = String(tabs);
  document.body.dataset["leader"] = String(leader);
}

/** One export in the list. */
class ExportView {
  readonly root: HTMLLIElement;
  readonly code: string;
  readonly #badge: HTMLElement;
  readonly #meter: HTMLElement;
  readonly #percent: HTMLElement;
  readonly #rows: HTMLElement;
  readonly #detail: HTMLElement;
  readonly #connection: HTMLElement;
  readonly #cancel: HTMLButtonElement;
  /** True when this page saw the export run (not a finished one restored after reload). */
  readonly #live: boolean;
  #job: Job;
  #updates = 0;
  #etaMs: number | undefined;
  #stop: (() => void) | undefined;

  constructor(job: Job, live: boolean) {
    const fragment = itemTemplate.content.cloneNode(true) as DocumentFragment;
    this.root = fragment.querySelector("li") as HTMLLIElement;
    this.code = job.code;
    this.#job = job;
    this.#live = live || !isEnded(job);
    this.root.dataset["code"] = job.code;
    const code = part(this.root, "export-code");
    code.textContent = job.code.slice(0, 8);
    code.title = job.code;
    this.#badge = part(this.root, "status-badge");
    this.#meter = part(this.root, "progress");
    this.#meter.setAttribute("aria-label", `Export ${job.code.slice(0, 8)} progress`);
    this.#percent = part(this.root, "percent");
    this.#rows = part(this.root, "rows-text");
    this.#detail = part(this.root, "detail");
    this.#connection = part(this.root, "connection");
    this.#cancel = part(this.root, "cancel-button") as HTMLButtonElement;
    this.#cancel.addEventListener("click", () => void this.#cancelOrRemove());
    this.#paint(job);
  }

  /** The newest snapshot this item shows. */
  get job(): Job {
    return this.#job;
  }

  follow(): void {
    this.stop();
    if (isEnded(this.#job)) return;
    this.#stop = watch(this.code, {
      job: (job, etaMs) => this.render(job, etaMs),
      error: (error) => this.fail(error),
      connection: (state) => this.#setConnection(state),
      transport: (kind) => this.#setTransport(kind),
    });
  }

  stop(): void {
    this.#stop?.();
    this.#stop = undefined;
  }

  dispose(): void {
    this.stop();
    this.root.remove();
  }

  render(job: Job, etaMs?: number): void {
    if (job.seq <= this.#job.seq) return;
    this.#etaMs = etaMs;
    this.#updates += 1;
    this.root.dataset["updates"] = String(this.#updates);
    this.#paint(job);
    if (!isEnded(job)) return;
    this.stop();
    this.#setConnection(undefined);
    const delay = Date.now() - Date.parse(job.updatedAt);
    this.root.dataset["delayMs"] = String(delay);
    counters.delays.push(Math.max(0, delay));
    // Once per export in this browser: the other tabs showing it do not download it again.
    if (job.status === "COMPLETED" && this.#live && autoDownload.checked) {
      api().downloadOnce(job).catch((error: unknown) => showFormError(describe(error)));
    }
  }

  fail(error: ExportError): void {
    renewIfExpired(error);
    this.stop();
    this.#setStatus("ERROR");
    this.#setConnection(undefined);
    this.#detail.replaceChildren(span("error", `${error.message} (${error.code})`));
    this.#detail.dataset["testid"] = "error-message";
  }

  #paint(job: Job): void {
    this.#job = job;
    this.#setStatus(job.status);
    this.#meter.setAttribute("aria-valuenow", String(job.progress));
    this.#meter.setAttribute("aria-valuetext", `${job.progress}% — ${job.status.toLowerCase().replace("_", " ")}`);
    this.#meter.style.setProperty("--value", `${job.progress}%`);
    this.#percent.textContent = `${job.progress}%`;
    const ended = isEnded(job);
    const eta = ended || this.#etaMs === undefined ? "" : ` · about ${Math.max(1, Math.round(this.#etaMs / 1000))} s left`;
    this.#rows.textContent = `${numberFormat.format(job.rowsDone)} / ${numberFormat.format(job.rowsTotal)} rows${eta}`;
    this.#cancel.textContent = ended ? "Remove" : "Cancel";
    this.#cancel.setAttribute("aria-label", `${ended ? "Remove" : "Cancel"} export ${job.code.slice(0, 8)}`);

    if (job.status === "COMPLETED" && job.file) {
      this.root.dataset["sha256"] = job.file.sha256;
      this.root.dataset["filename"] = job.file.name;
      const name = span("file", job.file.name);
      name.title = `SHA-256 ${job.file.sha256}`;
      const link = document.createElement("a");
      link.href = job.file.url; // same origin: the page is served by the BFF
      link.download = job.file.name;
      link.textContent = "Download";
      link.dataset["testid"] = "download-link";
      link.addEventListener("click", (event) => {
        event.preventDefault();
        downloadChecked(job, this.#detail).catch((error: unknown) => showFormError(describe(error)));
      });
      this.#detail.replaceChildren(name, span("meta", ` · ${formatBytes(job.file.size)} · `), link);
    } else if (job.status === "FAILED" || job.status === "CANCELLED") {
      const message = job.error ? `${job.error.message} (${job.error.code})` : job.status.toLowerCase();
      this.#detail.replaceChildren(span("error", message));
      this.#detail.dataset["testid"] = "error-message";
    }
  }

  async #cancelOrRemove(): Promise<void> {
    this.#cancel.disabled = true;
    try {
      const result = await api().cancel(this.code);
      if (result === undefined) remove(this.code);
      else this.render(result);
    } catch (error) {
      if (error instanceof ExportError && error.httpStatus === 404) remove(this.code);
      else showFormError(describe(error));
    } finally {
      this.#cancel.disabled = false;
    }
  }

  #setStatus(status: string): void {
    this.root.dataset["status"] = status;
    this.#badge.textContent = status.replace("_", " ");
  }

  #setTransport(kind: TransportKind): void {
    this.root.dataset["transport"] = kind;
    // "live" is for a stream; polled snapshots are as fresh as the last GET.
    if (this.root.dataset["connection"] === "open") this.#connection.textContent = openText(kind);
    const shown = part(this.root, "transport");
    shown.textContent = kind === "sse" ? "SSE" : "polling";
    shown.title =
      kind === "sse" ? "Events arrive over Server-Sent Events" : "The event stream does not get through (a proxy?): asking every few seconds";
  }

  #setConnection(state: ConnectionState | "polling" | undefined): void {
    if (state === undefined) delete this.root.dataset["connection"];
    else this.root.dataset["connection"] = state;
    this.#connection.textContent =
      state === "connecting"
        ? "waiting for a connection…"
        : state === "open"
          ? openText(this.root.dataset["transport"] === "polling" ? "polling" : "sse")
          : state === "polling"
            ? "polling"
            : "";
  }
}

/** An open connection as shown: live over SSE, up to date as of the last GET when polling. */
function openText(kind: TransportKind): string {
  return kind === "sse" ? "live" : "checked every few s";
}

/**
 * A second widget on the newest export. In the SSE modes it subscribes through the client
 * on its own, and the client's Map gives it the list item's stream instead of a new one.
 */
const spotlight = new (class Spotlight {
  code: string | undefined;
  readonly #root = byTestId("spotlight");
  readonly #code = byTestId("spotlight-code");
  readonly #status = byTestId("spotlight-status");
  readonly #meter = byTestId("spotlight-progress");
  #stop: (() => void) | undefined;
  #seq = -1;

  follow(code: string | undefined): void {
    this.stop();
    this.code = code;
    this.#seq = -1;
    this.#root.hidden = code === undefined;
    if (code === undefined) return;
    this.#code.textContent = code.slice(0, 8);
    // The list item of the code holds its newest snapshot: no request, no stream.
    const known = views.get(code)?.job;
    if (known) this.#paint(known);
    if (known && isEnded(known)) return;
    if (mode === "polling") {
      // Polling has no sharing to show: mirror the list item instead of polling twice.
      const timer = setInterval(() => {
        const job = views.get(code)?.job;
        if (job) this.#paint(job);
      }, 250);
      this.#stop = () => clearInterval(timer);
      return;
    }
    this.#stop = clientFor(code).subscribe(code, (event) => {
      if (event.type === "snapshot") this.#paint(event.job);
      else this.#status.textContent = "ERROR";
    });
  }

  stop(): void {
    this.#stop?.();
    this.#stop = undefined;
  }

  #paint(job: Job): void {
    if (job.seq <= this.#seq) return;
    this.#seq = job.seq;
    this.#root.dataset["status"] = job.status;
    this.#status.textContent = job.status.replace("_", " ");
    this.#meter.setAttribute("aria-valuenow", String(job.progress));
    this.#meter.style.setProperty("--value", `${job.progress}%`);
  }
})();

function isEnded(job: Job): boolean {
  return job.status === "COMPLETED" || job.status === "FAILED" || job.status === "CANCELLED";
}

function readRequest(): ExportRequest | string {
  const rows = rowsInput.valueAsNumber;
  const durationMs = durationInput.valueAsNumber;
  if (!Number.isInteger(rows) || rows < 1 || rows > 10_000_000) return "Rows must be a whole number from 1 to 10,000,000.";
  if (!Number.isInteger(durationMs) || durationMs < 0 || durationMs > 3_600_000) {
    return "Duration must be a whole number of milliseconds, at most 3,600,000.";
  }
  const scenario = isScenarioName(scenarioSelect.value) ? SCENARIOS[scenarioSelect.value].fields : {};
  // rowsPerSecond paces the export instead of durationMs: the backend takes one of them.
  const pace = "rowsPerSecond" in scenario ? {} : { durationMs };
  if (failAtInput.value.trim() === "") return { rows, ...pace, ...scenario };
  const failAt = failAtInput.valueAsNumber;
  if (!Number.isInteger(failAt) || failAt < 1 || failAt > 99) return "Fail at must be a percent between 1 and 99.";
  return { rows, ...pace, failAt, ...scenario };
}

/**
 * The Download link: asks for the file's first byte before the browser downloads it, so
 * a file gone (410 GONE once it expired) is said on the page instead of a failed download
 * in the browser's list.
 */
async function downloadChecked(job: Job, shown: HTMLElement): Promise<void> {
  const url = job.file?.url ?? "";
  const response = await fetch(url, { headers: { Range: "bytes=0-0" }, credentials: "same-origin" });
  if (response.ok) {
    api().download(job);
    return;
  }
  const body = (await response.json().catch(() => undefined)) as { error?: { code?: string; message?: string } } | undefined;
  const code = body?.error?.code ?? String(response.status);
  const message = response.status === 410 ? "The file has expired" : (body?.error?.message ?? response.statusText);
  const error = span("error", ` · ${message} (${response.status} ${code})`);
  error.dataset["testid"] = "download-error";
  shown.querySelector('[data-testid="download-error"]')?.remove();
  shown.append(error);
}

function showFormError(message: string | undefined): void {
  formError.hidden = message === undefined;
  formError.textContent = message ?? "";
}

function describe(error: unknown): string {
  renewIfExpired(error);
  if (error instanceof ExportError) return `${error.message} (${error.code})`;
  return error instanceof Error ? error.message : String(error);
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function span(className: string, text: string): HTMLSpanElement {
  const node = document.createElement("span");
  node.className = className;
  node.textContent = text;
  return node;
}

function part(root: HTMLElement, testId: string): HTMLElement {
  return root.querySelector(`[data-testid="${testId}"]`) as HTMLElement;
}

function byTestId<T extends HTMLElement = HTMLElement>(testId: string): T {
  return element<T>(`[data-testid="${testId}"]`);
}

function element<T extends Element>(selector: string): T {
  const found = document.querySelector<T>(selector);
  if (!found) throw new Error(`demo page is missing ${selector}`);
  return found;
}

let renewing = false;

/**
 * An expired session (after a day away) is not an error to show: the page starts a
 * new one and reloads, as the app using the library decides to.
 */
function renewIfExpired(error: unknown): void {
  if (renewing || !(error instanceof ExportError) || error.code !== "SESSION_EXPIRED") return;
  renewing = true;
  showFormError("Your session ended: starting a new one…");
  void api()
    .renewSession()
    .then(() => location.reload(), (failed: unknown) => showFormError(`Could not start a new session: ${String(failed)}`));
}
