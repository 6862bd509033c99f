// swagger-ui-dist files are bundled into the Worker as text (the Text rule in wrangler.toml),
// so /docs works with no internet access.
declare module "swagger-ui-dist/swagger-ui-bundle.js" {
  const text: string;
  export default text;
}
declare module "swagger-ui-dist/swagger-ui.css" {
  const text: string;
  export default text;
}
