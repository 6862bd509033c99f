/**
 * Who pays whom in the transfer scenarios (bench/world.ts), as pure functions of indexes into the
 * seeded people, so bench-tools.test.ts can check them without a Miniflare.
 *
 * A pair is unordered (`[low, high]`, low < high): a direct chat belongs to the two people, whoever
 * pays. `pairKey` names it like the product's `direct_key` does (services/membership.ts).
 */
export type Pair = readonly [number, number];

export const pairKey = (a: number, b: number) => (a < b ? `${a}:${b}` : `${b}:${a}`);

/**
 * `count` distinct pairs among the people `from..to - 1`, none with itself and none whose key is in
 * `taken` (pairs that already have a chat): the pairs whose direct chats are seeded before
 * `transfer-random-pairs`, so its transfers are between people who already talk.
 */
export function samplePairs(count: number, from: number, to: number, taken: ReadonlySet<string>, random = Math.random): Pair[] {
  const people = to - from;
  const possible = (people * (people - 1)) / 2;
  if (count > possible - taken.size) throw new Error(`only ${possible} pairs among ${people} people, ${count} asked`);
  const seen = new Set(taken);
  const pairs: Pair[] = [];
  while (pairs.length < count) {
    const a = from + Math.floor(random() * people);
    const b = from + Math.floor(random() * people);
    if (a === b || seen.has(pairKey(a, b))) continue;
    seen.add(pairKey(a, b));
    pairs.push(a < b ? [a, b] : [b, a]);
  }
  return pairs;
}

/**
 * An endless source of pairs among `from..to - 1` that have no chat (not in `taken`) and were
 * never handed out before: every transfer of `transfer-first-pair` (and of its floor) is the first
 * between its two people, so it creates their direct chat. The first of the pair pays (random).
 * Throws when every pair is used (499,500 among 1,000 people: hours of load here).
 */
export function freshPairs(from: number, to: number, taken: ReadonlySet<string>, random = Math.random) {
  const people = to - from;
  const possible = (people * (people - 1)) / 2;
  const inRange = (key: string) => key.split(":").every((n) => Number(n) >= from && Number(n) < to);
  const used = new Set([...taken].filter(inRange));
  return (): Pair => {
    if (used.size >= possible) throw new Error(`every pair among ${people} people has a chat`);
    for (;;) {
      const a = from + Math.floor(random() * people);
      const b = from + Math.floor(random() * people);
      if (a === b || used.has(pairKey(a, b))) continue;
      used.add(pairKey(a, b));
      return [a, b];
    }
  };
}
