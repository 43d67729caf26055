// Keyboard users pass a page's tabs at once (WCAG 2.4.1, bypass blocks): the first Tab stop jumps to what
// follows the tabs. The target takes the focus (tabIndex -1), so the next Tab goes on from the page's content.
export function SkipToContent({ label }: { label: string }) {
  return <a className="skip" href="#content">{label}</a>;
}

/** Placed right after the tabs. */
export function ContentStart() {
  return <span id="content" tabIndex={-1} />;
}
