import { registryOf } from "./client.js";
import type { ExportClient } from "./client.js";
import type { Unsubscribe } from "./subscription.js";
import { isTerminalStatus } from "./types.js";
import type { Job } from "./types.js";

/** How {@link notifyWhenHidden} words its notifications. */
export interface NotifyOptions {
  /** The notification's title; default `"Export ready"`. Its body is the file name. */
  readonly title?: (job: Job) => string;
}

/** The Notification API as the client uses it, typed here so the library does not require lib.dom. */
interface NotificationConstructorLike {
  readonly permission: string;
  new (title: string, options: { body: string; tag: string }): unknown;
}

/** How many running codes are remembered at most (as many as the client keeps snapshots of). */
const RUNNING_LIMIT = 1000;

/**
 * Opt-in, and a separate export so an app without it does not carry it: from now on,
 * shows a system notification when an export `client` saw running completes while the
 * tab is hidden (title, the file name as body, the code as tag). The app asks for the permission (`Notification.requestPermission()`
 * from a click); without "granted", or without the Notification API (Node, SSR, an
 * insecure origin), nothing is shown. Only a completion seen live counts: a job first
 * learnt of as COMPLETED (the list after a reload) is old news. `tag` is the code, so a
 * second notification of one export (another tab) replaces the first instead of stacking.
 * Returns the function that stops it.
 */
export function notifyWhenHidden(client: ExportClient, options: NotifyOptions = {}): Unsubscribe {
  const running = new Set<string>();
  return registryOf(client).known.observe((observation) => {
    if (observation.type === "removed") {
      running.delete(observation.code);
      return;
    }
    const { job } = observation;
    if (!isTerminalStatus(job.status)) {
      running.add(job.code);
      if (running.size > RUNNING_LIMIT) running.delete(running.values().next().value ?? "");
      return;
    }
    if (!running.delete(job.code) || job.status !== "COMPLETED") return;
    const Notification = (globalThis as { Notification?: NotificationConstructorLike }).Notification;
    const document = (globalThis as { document?: { visibilityState?: string } }).document;
    if (Notification?.permission !== "granted" || document?.visibilityState !== "hidden") return;
    new Notification(options.title?.(job) ?? "Export ready", { body: job.file?.name ?? job.code, tag: job.code });
  });
}
