# Who may send to and listen on each event hub (one per topic): the table in
# events/topic-access.json, the one list of it, which the local broker's tests also
# grant as Kafka ACLs. Each service signs in to Event Hubs as its own identity
# (OAUTHBEARER with an Entra ID token) and holds exactly these roles, each scoped to one
# event hub (azurerm_role_assignment.event_hubs in eventhubs.tf): a service cannot
# publish on a topic it does not own, nor read one it does not consume.
#
# Locals only, and no other local read here: infra/tests evaluates this file by itself
# with `terraform console`, which needs no provider.
locals {
  topic_access = jsondecode(file("${path.module}/../../events/topic-access.json")).topics

  # "<topic>/<service>/<send|listen>" => the role assignment's topic, identity and role.
  topic_grants = merge([
    for topic, access in local.topic_access : merge(
      { for service in access.senders : "${topic}/${service}/send" => {
        topic = topic, service = service, role = "Azure Event Hubs Data Sender"
      } },
      { for service in access.listeners : "${topic}/${service}/listen" => {
        topic = topic, service = service, role = "Azure Event Hubs Data Receiver"
      } },
    )
  ]...)
}
