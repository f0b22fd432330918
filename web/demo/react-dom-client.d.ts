// The part of `react-dom/client` the demo uses. The package installs React 18 and 19 under
// aliases (react18, react19) with @types/react only; this declares `createRoot`, which the
// bundle takes from react-dom 19 (web/scripts/build.sh aliases react-dom to react-dom19).
declare module "react-dom/client" {
  import type { ReactNode } from "react";

  export interface Root {
    render(children: ReactNode): void;
    unmount(): void;
  }

  export function createRoot(container: Element | DocumentFragment): Root;
}
