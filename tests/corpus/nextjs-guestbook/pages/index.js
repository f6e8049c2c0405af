import { query } from "../lib/db";

export async function getServerSideProps() {
  const { rows } = await query("SELECT id, message FROM entries ORDER BY id DESC LIMIT 20");
  return { props: { entries: rows } };
}

export default function Home({ entries }) {
  return (
    <main>
      <h1>Guestbook</h1>
      <ul>
        {entries.map((e) => (
          <li key={e.id}>{e.message}</li>
        ))}
      </ul>
    </main>
  );
}
