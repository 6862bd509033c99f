/**
 * What every step of a run shares: the count of its subrequests (a D1 query or batch, an object
 * call: one each) against the per-invocation cap, and a bounded number of calls in flight.
 */

/** Object calls in flight at once within a step. */
const CONCURRENCY = 25;

/** Counts a step's subrequests against the per-invocation cap. */
export class Budget {
  used = 0;
  spend<T>(promise: Promise<T>): Promise<T> {
    this.used += 1;
    return promise;
  }
}

/** `fn` over `items`, at most CONCURRENCY at a time, results in the order of `items`. */
export async function mapLimited<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      out[index] = await fn(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, items.length) }, worker));
  return out;
}
