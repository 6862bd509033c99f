/** One page of any list of the API: `nextCursor` null means there is no more. */
export type Page<T> = { items: T[]; nextCursor: string | null };

/** Every item of a cursor-paged list, fetching the next page only when the caller reaches it. */
export async function* paginate<T>(fetchPage: (cursor: string | undefined) => Promise<Page<T>>): AsyncGenerator<T> {
  let cursor: string | undefined;
  do {
    const page = await fetchPage(cursor);
    yield* page.items;
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
}
