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
