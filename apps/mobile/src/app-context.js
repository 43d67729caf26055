// What the screens need from the outside world, behind interfaces so the tests
// give in-memory stores, a real software key and a fake gateway (a router transport).
import { createContext, useContext } from "react";
export const AppContext = createContext(undefined);
export function useApp() {
    const s = useContext(AppContext);
    if (!s)
        throw new Error("useApp outside <App>");
    return s;
}
