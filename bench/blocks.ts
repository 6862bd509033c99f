/**
 * The generated blocks of the READMEs: the text between `<!-- <marker>:begin -->` and
 * `<!-- <marker>:end -->` is replaced by `content`; a text without the block gets it appended.
 */
export function replaceBlock(text: string, marker: string, content: string): string {
  const begin = `<!-- ${marker}:begin -->`;
  const end = `<!-- ${marker}:end -->`;
  const block = `${begin}\n${content}\n${end}`;
  const at = text.indexOf(begin);
  const until = at < 0 ? -1 : text.indexOf(end, at);
  if (at < 0 || until < 0) return `${text}\n${block}\n`;
  return text.slice(0, at) + block + text.slice(until + end.length);
}
