// React recipe: `useSyncExternalStore` on the room store. The roster and the
// count badge are two components on one room: one join on the wire, also
// under StrictMode's double mount (the store keeps the room until the next
// task, so the remount finds it joined).
import { StrictMode, useEffect, useState, useSyncExternalStore } from "react";
import { createRoot } from "react-dom/client";
import type { RoomSnapshot } from "../../presence.ts";
import { type Meta, type State, stats, store } from "./shared.ts";

/** The hook: the whole snapshot, or a selected part of it (re-renders only when that part changes). */
function useRoom<T = RoomSnapshot<State, Meta>>(
  select: (s: RoomSnapshot<State, Meta>) => T = (s) => s as T,
): T {
  return useSyncExternalStore(store.subscribe, () => select(store.getSnapshot()));
}

function Roster() {
  const { self, others, joined } = useRoom();
  useEffect(() => void stats.rosterMounts++, []); // twice under StrictMode
  const all = self ? [self, ...others] : others;
  return (
    <ul id="roster" data-joined={String(joined)}>
      {all.map((m) => (
        <li
          key={m.connectionId}
          data-cid={m.connectionId}
          data-user={m.meta.userId}
          data-typing={String(m.state?.typing === true)}
          data-self={String(m === self)}
        >
          {m.meta.name}
        </li>
      ))}
    </ul>
  );
}

function CountBadge() {
  const count = useRoom((s) => s.count);
  stats.countRenders++;
  return <b id="count">{count.users}</b>;
}

function App() {
  const [shown, setShown] = useState(true);
  return (
    <>
      <button type="button" id="toggle" onClick={() => setShown(!shown)}>
        {shown ? "leave" : "join"}
      </button>
      <button type="button" id="type" onClick={() => store.update({ state: { typing: true } })}>
        type
      </button>
      {shown && (
        <>
          <Roster />
          <CountBadge />
        </>
      )}
    </>
  );
}

createRoot(document.getElementById("app")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
