/**
 * The wire-transparency table (transparency-cases.ts) read by a real browser: Chromium's
 * own EventSource, on a page of the BFF's origin (so the session cookie is first-party),
 * reads each case's job stream through the real BFF binary in front of the scripted
 * backend, and must dispatch what a spec-following reader of the job's own stream would:
 * the same [type, lastEventId, data] the `eventsource` npm client is held to
 * (transparency.test.ts). Where the two disagreed, the WHATWG spec — Chromium — would
 * be the expectation; on this table they agree.
 */
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { externalBffUrl, launchChromium, missingForBrowser, prerequisites } from "./servers.js";
import { codeOf } from "./fakes.js";
import { cases, eventTypes, startScriptedBff } from "./transparency-cases.js";
import type { ScriptedBff } from "./transparency-cases.js";

const missing = prerequisites(
  "transparency tests in Chromium (real BFF binary)",
  externalBffUrl ? [] : missingForBrowser(),
);

/** What the page's EventSource did: every event it dispatched, and how its reading ended. */
interface Read {
  readonly events: [type: string, lastEventId: string, data: string][];
  readonly end: string;
}

/**
 * Runs in the page: opens path with the page's EventSource and records every event it
 * dispatches (onmessage, and a listener per type of the table) until the BFF ends the
 * stream — the browser then reconnects: an error with readyState CONNECTING — or
 * timeoutMs pass.
 */
function readStream({ path, types, timeoutMs }: { path: string; types: string[]; timeoutMs: number }): Promise<Read> {
  return new Promise((done) => {
    const source = new EventSource(path);
    const events: Read["events"] = [];
    const finish = (end: string): void => {
      clearTimeout(timer);
      source.close();
      done({ events, end });
    };
    const timer = setTimeout(() => finish(`no end of the stream within ${timeoutMs} ms`), timeoutMs);
    const record = (event: MessageEvent): void => {
      events.push([event.type, event.lastEventId, String(event.data)]);
    };
    source.onmessage = record;
    for (const type of types) source.addEventListener(type, record);
    source.onerror = () => finish(source.readyState === EventSource.CONNECTING ? "ended" : "failed");
  });
}

describe.skipIf(missing !== undefined || externalBffUrl !== undefined)("the BFF relays the wire transparently to Chromium", () => {
  let scripted: ScriptedBff;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    scripted = await startScriptedBff();
    browser = await launchChromium();
    context = await browser.newContext();
    page = await context.newPage();
    page.on("pageerror", (error) => pageErrors.push(error.message));
    // A page of the BFF's origin that runs no script of its own: its health answer.
    const health = await page.goto(`${scripted.bff.bffUrl}/healthz`);
    expect(health?.status()).toBe(200);
    // The session, as a browser gets it: the BFF sets its cookie on a create from the
    // page (answered by the scripted backend).
    const created = await page.evaluate(async () => {
      const response = await fetch("/api/exports", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: '{"rows":1,"durationMs":0}',
      });
      return response.status;
    });
    expect(created).toBe(202);
    expect((await context.cookies()).map((cookie) => cookie.name)).not.toEqual([]);
  });

  afterAll(async () => {
    await browser?.close();
    await scripted?.stop();
  });

  cases.forEach(([name, script, want], i) => {
    it(name, async () => {
      const code = codeOf(i + 1);
      scripted.script(code, script);
      const read = await page.evaluate(readStream, { path: `/api/exports/${code}/events`, types: [...eventTypes], timeoutMs: 10_000 });
      expect(read).toEqual({ events: want, end: "ended" });
      expect(pageErrors).toEqual([]);
    });
  });
});
