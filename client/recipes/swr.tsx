import useSWRSubscription from "swr/subscription";
import type { SWRSubscriptionOptions } from "swr/subscription";
import type { ExportError, Job } from "@exportstream/client";
import { useExportClient } from "@exportstream/client/react";

/** One export through SWR: `data` is the newest snapshot, `error` a failed stream's ExportError. */
export function useExportSWR(code: string) {
  const client = useExportClient();
  return useSWRSubscription(["export", code], ([, key]: [string, string], { next }: SWRSubscriptionOptions<Job, ExportError>) =>
    // The client's unsubscribe is what SWR calls when the last component leaves.
    client.subscribe(key, (event) => (event.type === "snapshot" ? next(null, event.job) : next(event.error))),
  );
}

export function ExportStatusSWR({ code }: { code: string }) {
  const { data: job, error } = useExportSWR(code);
  if (error) return <p>Failed: {error.message}</p>;
  if (!job) return <p>Waiting…</p>;
  return (
    <p>
      {job.status} {job.progress}%
    </p>
  );
}
