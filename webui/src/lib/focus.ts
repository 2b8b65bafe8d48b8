/** Where the keyboard focus goes when the control that had it goes away. */

/** The composer's text box: the focus's home in the session view. */
export const COMPOSER_INPUT_ID = "composer-input";

/** True when nothing has the focus (the element that had it was removed or disabled). */
export function focusLost(doc: Document = document): boolean {
  return doc.activeElement === null || doc.activeElement === doc.body;
}

/** Give the focus to the composer, unless something else already has it. */
export function focusComposerIfLost(doc: Document = document): void {
  if (focusLost(doc)) doc.getElementById(COMPOSER_INPUT_ID)?.focus();
}
