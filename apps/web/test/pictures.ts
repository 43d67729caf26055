/**
 * Runs in the browser (pass it to page.evaluate): a PNG as a phone's picture
 * might be, `fill` or transparent, with a red `square` px square in its
 * middle when asked, as base64.
 */
export function drawPng(o: { width: number; height: number; fill?: string; square?: number }): string {
  const c = document.createElement("canvas");
  c.width = o.width;
  c.height = o.height;
  const x = c.getContext("2d")!;
  if (o.fill) {
    x.fillStyle = o.fill;
    x.fillRect(0, 0, o.width, o.height);
  }
  if (o.square) {
    x.fillStyle = "#f00";
    x.fillRect((o.width - o.square) / 2, (o.height - o.square) / 2, o.square, o.square);
  }
  return c.toDataURL("image/png").split(",")[1];
}
