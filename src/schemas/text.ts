/**
 * Bidirectional embedding, override and isolate controls (U+202A–U+202E, U+2066–U+2069): they
 * reorder how the text around them is displayed, so a name, a group title or a transfer note
 * holding them can show other people something else than it says ("Trojan Source"). Refused in
 * every short text one user shows another. Written as ranges in a pattern with no flags and no
 * `\p{…}`, so JSON Schema reads the published pattern exactly as the server does.
 */
export const BIDI_CONTROL_RANGES = "\\u202a-\\u202e\\u2066-\\u2069";

/** A whole string free of bidirectional controls. */
export const NO_BIDI_CONTROLS = new RegExp(`^[^${BIDI_CONTROL_RANGES}]*$`);

export const NO_BIDI_CONTROLS_MESSAGE = "must not contain bidirectional override characters (U+202A–U+202E, U+2066–U+2069)";

/**
 * Control (Unicode Cc: U+0000–U+001F, U+007F–U+009F) and invisible format characters (Cf) in the
 * Basic Multilingual Plane, the bidirectional controls above included: a group title, a display
 * name, a transfer note or a grant reason holding them can hide text, break a line in someone
 * else's UI or spoof what it says. Kept: U+200C/U+200D (zero-width non-joiner/joiner: Persian and
 * Indic spelling, emoji sequences) and U+200E/U+200F/U+061C (the left-to-right, right-to-left and
 * Arabic letter marks, which ordinary right-to-left text needs and which reorder nothing beyond a
 * neutral character). Ranges only, in a pattern with no flags and no `\p{…}`, so JSON Schema reads
 * the published pattern exactly as the server does (format characters beyond the BMP, such as
 * emoji tag sequences, cannot be written that way and are left alone).
 */
export const CONTROL_AND_FORMAT_RANGES = [
  "\\u0000-\\u001f\\u007f-\\u009f", // Cc
  "\\u00ad\\u0600-\\u0605\\u06dd\\u070f\\u0890\\u0891\\u08e2\\u180e", // Cf: soft hyphen, number signs, Mongolian separator
  "\\u200b\\u2028\\u2029", // zero-width space; line and paragraph separators (Zl/Zp: a line break by another name)
  BIDI_CONTROL_RANGES, // Cf: bidirectional embeddings, overrides and isolates
  "\\u2060-\\u2064\\u206a-\\u206f\\ufeff\\ufff9-\\ufffb", // Cf: word joiner, invisible operators, deprecated formats, BOM, annotations
].join("");

/** A whole string free of control and format characters (see CONTROL_AND_FORMAT_RANGES). */
export const NO_CONTROL_CHARACTERS = new RegExp(`^[^${CONTROL_AND_FORMAT_RANGES}]*$`);

export const NO_CONTROL_CHARACTERS_MESSAGE =
  "must not contain control or invisible format characters (Unicode Cc/Cf, bidirectional overrides included)";

/** What every field checked with NO_CONTROL_CHARACTERS says about it in the document. */
export const NO_CONTROL_CHARACTERS_NOTE =
  "No control characters (line breaks and tabs included) and no invisible format characters (Unicode Cc/Cf, such as bidirectional overrides U+202A–U+202E and U+2066–U+2069, zero-width spaces or a BOM); the zero-width joiners and the left-to-right/right-to-left marks are allowed.";
