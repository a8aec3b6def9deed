import { experimental_streamedQuery as streamedQuery, useQuery } from "@tanstack/react-query";
import type { Job } from "@exportstream/client";
import { useExportClient } from "@exportstream/client/react";

/** One export as a TanStack query: its data is the newest snapshot, up to the terminal one. */
export function useExportQuery(code: string) {
  const client = useExportClient();
  return useQuery({
    queryKey: ["export", code],
    queryFn: streamedQuery<Job, Job | null>({
      // TanStack aborts `signal` when the last component using the query unmounts: that
      // unsubscribes. A FAILED or CANCELLED job ends the stream as data; a failed stream
      // (ERROR, STREAM_CLOSED, SESSION_EXPIRED) becomes the query's error.
      streamFn: ({ signal }) => client.events(code, { signal }),
      reducer: (_previous, job) => job, // keep the newest snapshot, not every one
      initialValue: null,
    }),
    staleTime: Infinity, // live already: no refetch on focus or remount
    retry: false,
  });
}

export function ExportStatusQuery({ code }: { code: string }) {
  const { data: job, error } = useExportQuery(code);
  if (error) return <p>Failed: {error.message}</p>;
  if (!job) return <p>Waiting…</p>;
  return (
    <p>
      {job.status} {job.progress}%
    </p>
  );
}
