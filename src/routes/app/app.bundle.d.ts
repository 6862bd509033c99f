// The /app page's browser script as text: src/routes/app/app.bundle.js, generated (not committed)
// by scripts/build-app.ts before every build of the Worker.
declare const script: string;
export default script;
