variable "subscription_id" {
  description = "Azure subscription to deploy into."
  type        = string
}

variable "location" {
  description = "Primary region (design: Korea Central, zones 1-3)."
  type        = string
  default     = "koreacentral"
}

variable "dr_location" {
  description = "Disaster-recovery region for geo-redundant backups and the registry replica (design: Korea South)."
  type        = string
  default     = "koreasouth"
}

variable "name" {
  description = "Workload name used in every resource name."
  type        = string
  default     = "phonebill"
}

variable "environment" {
  description = "Environment suffix in resource names."
  type        = string
  default     = "prod"
}

variable "unique_suffix" {
  description = "Short lowercase suffix for names that must be globally unique (Key Vault, Redis, Event Hubs, PostgreSQL, registry, storage)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]{3,6}$", var.unique_suffix))
    error_message = "unique_suffix must be 3-6 lowercase letters or digits."
  }
}

variable "zones" {
  description = "Availability zones used by every zonal resource."
  type        = list(string)
  default     = ["1", "2", "3"]
}

variable "kubernetes_version" {
  description = "AKS Kubernetes version (design 3.1.1)."
  type        = string
  default     = "1.29"
}

variable "aks_admin_group_object_ids" {
  description = "Entra ID groups that get cluster-admin through Azure RBAC."
  type        = list(string)
  default     = []
}

variable "kubernetes_namespace" {
  description = "Namespace the Helm release is installed in (its service accounts are federated with the workload identity)."
  type        = string
  default     = "phonebill-prod"
}

variable "helm_release_name" {
  description = "Helm release name; service accounts are named <release>-<service> (see the chart's phonebill.fullname)."
  type        = string
  default     = "phonebill"
}

variable "github_repository" {
  description = "owner/name of the GitHub repository whose CI pushes images (federated with the CI identity)."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$", var.github_repository))
    error_message = "github_repository is owner/name, e.g. phonebill/phonebill."
  }
}

variable "public_host" {
  description = "Public host name served by the Application Gateway (the chart's ingress.host)."
  type        = string
}

variable "tls_certificate_secret_id" {
  description = "Versionless Key Vault secret id of the wildcard TLS certificate (PFX) for the Application Gateway listener; null until it is imported."
  type        = string
  default     = null
}

variable "key_vault_allowed_ip_ranges" {
  description = "Public CIDRs allowed through the Key Vault firewall (where Terraform runs, if not inside the VNet). Empty: private endpoint only."
  type        = list(string)
  default     = []
}

variable "postgres_password_version" {
  description = "Bump to generate a new PostgreSQL admin password and write it to the server and to Key Vault in one apply (rotation)."
  type        = number
  default     = 1
}

variable "service_login_password_version" {
  description = "Bump to generate new passwords for the logins of command-service, the projector and kos-mock (phonebill_command, phonebill_projector, phonebill_kos): the next release's migration Jobs set them, the services read the new URLs."
  type        = number
  default     = 1
}

variable "query_role_password_version" {
  description = "Bump to generate a new password for query-service's read-only login (phonebill_query): the projector's migration Job sets it on the role, query-service reads the new URL."
  type        = number
  default     = 1
}

variable "jwt_signing_key_version" {
  description = "Bump to generate a new token signing key (its id is k<version>); see the runbook for the overlap."
  type        = number
  default     = 1
}

variable "jwt_previous_verify_keys" {
  description = "Public keys of retired token signing keys still verified during a rotation (`k<n>:<base64 DER>` entries, from the previous helm_values); empty once their tokens have expired."
  type        = list(string)
  default     = []
}

variable "kos_signing_key_version" {
  description = "Bump to generate a new KOS message signing key (its id is kos<version>); see the runbook for the overlap."
  type        = number
  default     = 1
}

variable "eventhubs_capacity" {
  description = "Event Hubs Standard throughput units (1 MB/s in, 2 MB/s out each)."
  type        = number
  default     = 2
}

variable "eventhubs_max_throughput_units" {
  description = "Auto-inflate ceiling for Event Hubs throughput units."
  type        = number
  default     = 10
}

variable "tags" {
  description = "Tags on every resource."
  type        = map(string)
  default = {
    workload    = "phonebill"
    environment = "prod"
  }
}
