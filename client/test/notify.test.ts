// @vitest-environment jsdom
/** notifyWhenHidden's rules, with a recording Notification: what counts as "finished while you looked away". */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createExportClient, notifyWhenHidden } from "../src/index.js";
import type { ExportClient } from "../src/index.js";
import { CODE, completed, FakeEventSource, flush, job, onlySource, routedFetch } from "./fakes.js";

const shown: { title: string; body: string; tag: string }[] = [];
let permission = "granted";
let visibility = "hidden";

class RecordingNotification {
  static get permission(): string {
    return permission;
  }
  constructor(title: string, options: { body: string; tag: string }) {
    shown.push({ title, ...options });
  }
}

beforeEach(() => {
  shown.length = 0;
  permission = "granted";
  visibility = "hidden";
  Object.defineProperty(globalThis, "Notification", { configurable: true, value: RecordingNotification });
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => visibility });
});

afterEach(() => {
  Reflect.deleteProperty(globalThis, "Notification");
  Reflect.deleteProperty(document, "visibilityState");
});

function client(notify: boolean | { title: (j: { code: string }) => string } = true): ExportClient {
  const { fetch } = routedFetch({ "GET http://bff.test/api/exports": [200, { exports: [completed(9)] }] });
  const each = createExportClient({ baseUrl: "http://bff.test", fetch, EventSource: FakeEventSource });
  if (notify) notifyWhenHidden(each, notify === true ? {} : notify);
  return each;
}

async function runToCompletion(each: ExportClient): Promise<void> {
  each.subscribe(CODE, () => {});
  await flush();
  onlySource().emit(job({ seq: 1, progress: 50 }));
  onlySource().emit(completed(2));
}

describe("notifyWhenHidden", () => {
  it("shows one notification (file name, code as tag) for an export seen running that completes while hidden", async () => {
    await runToCompletion(client({ title: (j) => `Done: ${j.code.slice(0, 4)}` }));
    expect(shown).toEqual([{ title: "Done: 6f1c", body: "export.csv", tag: CODE }]);
  });

  it("shows nothing while the tab is visible, without the permission, or when not asked for", async () => {
    visibility = "visible";
    await runToCompletion(client());
    visibility = "hidden";
    permission = "default";
    await runToCompletion(client());
    permission = "granted";
    await runToCompletion(client(false));
    expect(shown).toEqual([]);
  });

  it("shows nothing for a job first learnt of as finished (the list after a reload), nor for FAILED", async () => {
    const each = client();
    await each.list();
    each.subscribe("0d9c2a44-1b1e-4f3b-8e2a-5c6d7e8f9a0b", () => {});
    await flush();
    onlySource().emit(job({ code: "0d9c2a44-1b1e-4f3b-8e2a-5c6d7e8f9a0b", seq: 1 }));
    onlySource().emit(job({ code: "0d9c2a44-1b1e-4f3b-8e2a-5c6d7e8f9a0b", seq: 2, status: "FAILED" }));
    expect(shown).toEqual([]);
  });
});
