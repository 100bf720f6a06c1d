// Least privilege on MongoDB: one role and one user per component, created once by the official image's
// first-start hook (/docker-entrypoint-initdb.d, run as the root user, which nothing else uses). Each role
// lists exactly the collections and actions its component needs; passwords come from the environment
// (.env). The same roles as Atlas custom roles: docs/data-governance.md.
const name = process.env.CROSS_SELL_MONGO_DATABASE || "insurance";
const target = db.getSiblingDB(name);
const on = (collection, actions) => ({ resource: { db: name, collection: collection }, actions: actions });
const READ = ["find"];
const WRITE = ["find", "insert", "update", "createIndex"];
const ROLES = {
  // python -m cross_sell load / load-outcomes (mongo-init): customers and outcomes in, the suppression list read.
  crossSellLoader: [on("customers", WRITE), on("customer_outcomes", WRITE), on("erased_customers", READ)],
  // The training DAG's extract: customers out, erased ones left out.
  crossSellTraining: [on("customers", READ), on("erased_customers", READ)],
  // The scoring DAG: customers and their consent and contacts read, erased ones left out (the suppression
  // list), scores written (and stale ones removed).
  crossSellScoring: [on("customers", READ), on("customer_consent", READ), on("customer_contacts", READ),
                     on("erased_customers", READ), on("customer_scores", [...WRITE, "remove"])],
  // The monitoring DAG: outcomes read; the suppression list read to check the erasure receipts against it.
  crossSellMonitoring: [on("customer_outcomes", READ), on("erased_customers", READ)],
  // The erasure DAG: customers removed everywhere, their keyed hashes added to the suppression list.
  crossSellErasure: [on("customers", ["find", "remove"]), on("customer_scores", ["find", "remove"]),
                     on("customer_outcomes", ["find", "remove"]), on("customer_consent", ["find", "remove"]),
                     on("customer_contacts", ["find", "remove"]), on("erased_customers", WRITE)],
};
const USERS = {
  crossSellLoader: "MONGO_LOADER", crossSellTraining: "MONGO_TRAINING", crossSellScoring: "MONGO_SCORING",
  crossSellMonitoring: "MONGO_MONITORING", crossSellErasure: "MONGO_ERASURE",
};
for (const [role, privileges] of Object.entries(ROLES)) {
  target.createRole({ role: role, privileges: privileges, roles: [] });
  const prefix = USERS[role];
  const password = process.env[`${prefix}_PASSWORD`];
  if (!password) { throw new Error(`${prefix}_PASSWORD is not set`); }
  target.createUser({ user: process.env[`${prefix}_USER`], pwd: password, roles: [{ role: role, db: name }] });
}
