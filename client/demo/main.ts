/**
 * The demo page: start exports, watch each one's progress live over SSE, and get the
 * file downloaded in this tab when it completes. Plain DOM on top of the library.
 */
import { createExportClient, ExportError } from "../src/index.js";
import type { ExportRequest, Job } from "../src/index.js";

const client = createExportClient();

const form = element<HTMLFormElement>("#export-form");
const rowsInput = element<HTMLInputElement>("#rows");
const durationInput = element<HTMLInputElement>("#duration");
const failAtInput = element<HTMLInputElement>("#fail-at");
const startButton = element<HTMLButtonElement>('[data-testid="start-button"]');
const formError = element<HTMLParagraphElement>('[data-testid="form-error"]');
const list = element<HTMLOListElement>('[data-testid="export-list"]');
const emptyState = element<HTMLParagraphElement>('[data-testid="empty-state"]');
const openStreams = element<HTMLParagraphElement>('[data-testid="open-streams"]');
const itemTemplate = element<HTMLTemplateElement>("#export-item-template");

const numberFormat = new Intl.NumberFormat("en-US");
/** Codes whose file was already downloaded automatically (once per export). */
const downloaded = new Set<string>();

form.addEventListener("submit", (event) => {
  event.preventDefault();
  void startExport();
});

async function startExport(): Promise<void> {
  const request = readRequest();
  if (typeof request === "string") {
    showFormError(request);
    return;
  }
  showFormError(undefined);
  startButton.disabled = true;
  try {
    const job = await client.start(request);
    const view = new ExportView(job);
    list.prepend(view.root);
    emptyState.hidden = true;
    follow(job.code, view);
  } catch (error) {
    showFormError(describe(error));
  } finally {
    startButton.disabled = false;
  }
}

function follow(code: string, view: ExportView): void {
  client.subscribe(code, (event) => {
    if (event.type === "error") view.fail(event.error);
    else {
      view.render(event.job);
      if (event.job.status === "COMPLETED" && !downloaded.has(code)) {
        downloaded.add(code);
        client.download(event.job);
      }
    }
    updateOpenStreams();
  });
  updateOpenStreams();
}

function updateOpenStreams(): void {
  // The subscription ends (and its EventSource closes) after the listeners ran.
  queueMicrotask(() => {
    const count = client.openStreams().length;
    openStreams.textContent = `${count} open ${count === 1 ? "stream" : "streams"}`;
  });
}

/** One export in the list. */
class ExportView {
  readonly root: HTMLLIElement;
  readonly #badge: HTMLElement;
  readonly #progress: HTMLProgressElement;
  readonly #percent: HTMLElement;
  readonly #rows: HTMLElement;
  readonly #detail: HTMLElement;
  #seq = -1;

  constructor(job: Job) {
    const fragment = itemTemplate.content.cloneNode(true) as DocumentFragment;
    this.root = fragment.querySelector("li") as HTMLLIElement;
    this.root.dataset["code"] = job.code;
    const code = part(this.root, "export-code");
    code.textContent = job.code.slice(0, 8);
    code.title = job.code;
    this.#badge = part(this.root, "status-badge");
    this.#progress = part(this.root, "progress") as HTMLProgressElement;
    this.#percent = part(this.root, "percent");
    this.#rows = part(this.root, "rows-text");
    this.#detail = part(this.root, "detail");
    this.render(job);
  }

  render(job: Job): void {
    if (job.seq <= this.#seq) return;
    this.#seq = job.seq;
    this.#setStatus(job.status);
    this.#progress.value = job.progress;
    this.#progress.setAttribute("aria-valuenow", String(job.progress));
    this.#percent.textContent = `${job.progress}%`;
    this.#rows.textContent = `${numberFormat.format(job.rowsDone)} / ${numberFormat.format(job.rowsTotal)} rows`;

    if (job.status === "COMPLETED" && job.file) {
      this.root.dataset["sha256"] = job.file.sha256;
      this.root.dataset["filename"] = job.file.name;
      const name = span("file", job.file.name);
      name.title = `SHA-256 ${job.file.sha256}`;
      const link = document.createElement("a");
      link.href = client.fileUrl(job);
      link.download = job.file.name;
      link.textContent = "Download again";
      link.dataset["testid"] = "download-link";
      this.#detail.replaceChildren(name, span("meta", ` · ${formatBytes(job.file.size)} · `), link);
    } else if (job.status === "FAILED" || job.status === "CANCELLED") {
      const message = job.error ? `${job.error.message} (${job.error.code})` : job.status.toLowerCase();
      this.#detail.replaceChildren(span("error", message));
      this.#detail.dataset["testid"] = "error-message";
    }
  }

  fail(error: ExportError): void {
    this.#setStatus("ERROR");
    this.#detail.replaceChildren(span("error", `${error.message} (${error.code})`));
    this.#detail.dataset["testid"] = "error-message";
  }

  #setStatus(status: string): void {
    this.root.dataset["status"] = status;
    this.#badge.textContent = status.replace("_", " ");
  }
}

function readRequest(): ExportRequest | string {
  const rows = rowsInput.valueAsNumber;
  const durationMs = durationInput.valueAsNumber;
  if (!Number.isInteger(rows) || rows < 1) return "Rows must be a whole number of at least 1.";
  if (!Number.isInteger(durationMs) || durationMs < 0) return "Duration must be a whole number of milliseconds.";
  if (failAtInput.value.trim() === "") return { rows, durationMs };
  const failAt = failAtInput.valueAsNumber;
  if (!Number.isInteger(failAt) || failAt < 1 || failAt > 99) return "Fail at must be a percent between 1 and 99.";
  return { rows, durationMs, failAt };
}

function showFormError(message: string | undefined): void {
  formError.hidden = message === undefined;
  formError.textContent = message ?? "";
}

function describe(error: unknown): string {
  if (error instanceof ExportError) return `${error.message} (${error.code})`;
  return error instanceof Error ? error.message : String(error);
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
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

function element<T extends Element>(selector: string): T {
  const found = document.querySelector<T>(selector);
  if (!found) throw new Error(`demo page is missing ${selector}`);
  return found;
}
