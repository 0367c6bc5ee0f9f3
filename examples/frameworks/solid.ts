// Solid recipe: `from(store)` turns the room store into a signal; disposing
// the owner (unmount) unsubscribes, which leaves the room.
import { createMemo, createSignal, For, from, Show } from "solid-js";
import html from "solid-js/html";
import { render } from "solid-js/web";
import { stats, store } from "./shared.ts";

function Roster() {
  const room = from(store);
  const all = () => {
    const s = room();
    return s ? (s.self ? [s.self, ...s.others] : s.others) : [];
  };
  return html`
    <ul id="roster" data-joined=${() => String(room()?.joined ?? false)}>
      <${For} each=${all}>${(m: ReturnType<typeof all>[number]) =>
        html`
          <li data-cid=${m.connectionId} data-user=${m.meta.userId}
            data-typing=${String(m.state?.typing === true)} data-self=${String(m === room()?.self)}
          >${m.meta.name}</li>
        `}<//>
      </ul>
  `;
}

function CountBadge() {
  const room = from(store);
  const count = createMemo(() => room()?.count); // same object while the numbers hold
  return html`<b id="count">${() => {
    stats.countRenders++;
    return String(count()?.users ?? 0);
  }}</b>`;
}

function App() {
  const [shown, setShown] = createSignal(true);
  return html`
    <button id="toggle" onClick=${() =>
      setShown(!shown())}>${() => (shown() ? "leave" : "join")}</button>
    <button id="type" onClick=${() => store.update({ state: { typing: true } })}>type</button>
    <${Show} when=${shown}>
      <${Roster} />
      <${CountBadge} />
      <//>
  `;
}

render(App, document.getElementById("app")!);
