{{/*
Release-wide name: the release name when it already says "phonebill", else "<release>-phonebill".
*/}}
{{- define "phonebill.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of one service's objects. Call with (dict "root" $ "name" "command-service"). */}}
{{- define "phonebill.componentName" -}}
{{- printf "%s-%s" (include "phonebill.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "phonebill.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "phonebill.labels" -}}
{{ include "phonebill.selectorLabels" . }}
app.kubernetes.io/part-of: phonebill
app.kubernetes.io/component: {{ .component | default .name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
tier: application
{{- end -}}

{{/* Labels for release-wide objects (ConfigMap, Ingress, rules). */}}
{{- define "phonebill.commonLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: phonebill
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "phonebill.image" -}}
{{- $img := .root.Values.image -}}
{{- $digest := (index .root.Values.services .name).imageDigest -}}
{{- $repo := printf "%s/%s" $img.repositoryPrefix .name -}}
{{- if $img.registry }}{{ $repo = printf "%s/%s" $img.registry $repo }}{{ end -}}
{{- if $digest -}}
{{- printf "%s@%s" $repo $digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* The web app's image (phonebill/web), by digest when web.imageDigest is set. */}}
{{- define "phonebill.webImage" -}}
{{- $img := .Values.image -}}
{{- $repo := printf "%s/web" $img.repositoryPrefix -}}
{{- if $img.registry }}{{ $repo = printf "%s/%s" $img.registry $repo }}{{ end -}}
{{- if .Values.web.imageDigest -}}
{{- printf "%s@%s" $repo .Values.web.imageDigest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* Name of the Kubernetes Secret a service's env-var secrets are read from: with Key
Vault the one its own SecretProviderClass syncs. Call with (dict "root" $ "name" <service>). */}}
{{- define "phonebill.secretName" -}}
{{- if eq .root.Values.secrets.provider "azure-key-vault" -}}
{{- printf "%s-%s" .root.Values.secrets.azureKeyVault.syncedSecretName .name -}}
{{- else -}}
{{- .root.Values.secrets.kubernetes.secretName -}}
{{- end -}}
{{- end -}}

{{/* The secrets an identity is given, as a JSON list: its secrets.grants, and with
kafka.auth password the broker's kafka-sasl-password for a service (an entry of
services; never a migration Job, which does not use Kafka). Call with (dict "root" $
"name" <identity>), plus "as": "files" for the private keys alone (*-signing-key, mounted
as files) or "variables" for the rest (read from the environment). */}}
{{- define "phonebill.grants" -}}
{{- $all := index .root.Values.secrets.grants .name | default list -}}
{{- if and (eq .root.Values.kafka.auth "password") (hasKey .root.Values.services .name) -}}
{{- $all = append $all "kafka-sasl-password" -}}
{{- end -}}
{{- $grants := list -}}
{{- range $all -}}
{{- $file := hasSuffix "-signing-key" . -}}
{{- if or (not $.as) (and $file (eq $.as "files")) (and (not $file) (eq $.as "variables")) -}}
{{- $grants = append $grants . -}}
{{- end -}}
{{- end -}}
{{- toJson $grants -}}
{{- end -}}

{{/* Who reads secrets, each as an identity (service account, Key Vault identity and
SecretProviderClass) of its own, as a JSON list: every enabled service, and the migration
Job of each (<service>-migrate), which alone is given the administrator's database URL
to make its service's login. */}}
{{- define "phonebill.identities" -}}
{{- $ids := list -}}
{{- range $name, $svc := .Values.services -}}
{{- if $svc.enabled -}}
{{- $ids = append $ids $name -}}
{{- end -}}
{{- end -}}
{{- if .Values.release.migrations.enabled -}}
{{- range $name := .Values.release.migrations.services -}}
{{- if (index $.Values.services $name).enabled -}}
{{- $ids = append $ids (printf "%s-migrate" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $ids -}}
{{- end -}}

{{- define "phonebill.kafkaUsesSasl" -}}
{{- if hasPrefix "sasl" (lower .Values.kafka.securityProtocol) }}true{{ end -}}
{{- end -}}

{{/*
Effective HPA maximum. Consumers default to, and may never exceed, the partition count.
*/}}
{{- define "phonebill.maxReplicas" -}}
{{- $svc := .svc -}}
{{- $partitions := int .root.Values.kafka.partitions -}}
{{- if eq $svc.role "consumer" -}}
{{- $max := int (default $partitions $svc.autoscaling.maxReplicas) -}}
{{- if gt $max $partitions -}}
{{- fail (printf "services.%s.autoscaling.maxReplicas (%d) exceeds kafka.partitions (%d): a consumer group cannot use more members than partitions" .name $max $partitions) -}}
{{- end -}}
{{- $max -}}
{{- else -}}
{{- required (printf "services.%s.autoscaling.maxReplicas is required for an http service" .name) $svc.autoscaling.maxReplicas | int -}}
{{- end -}}
{{- end -}}

{{/*
Checks that fail the render early with a clear message.
*/}}
{{- define "phonebill.validate" -}}
{{- $v := .Values -}}
{{- if not (has $v.secrets.provider (list "kubernetes" "azure-key-vault")) -}}
{{- fail (printf "secrets.provider must be kubernetes or azure-key-vault, not %q" $v.secrets.provider) -}}
{{- end -}}
{{- if eq $v.secrets.provider "azure-key-vault" -}}
{{- $_ := required "secrets.azureKeyVault.name is required (terraform output key_vault_name)" $v.secrets.azureKeyVault.name -}}
{{- $_ := required "secrets.azureKeyVault.tenantId is required (terraform output tenant_id)" $v.secrets.azureKeyVault.tenantId -}}
{{- range $name := include "phonebill.identities" . | fromJsonArray -}}
{{- $_ := required (printf "secrets.azureKeyVault.clientIds.%s is required (terraform output helm_values)" $name) (index $v.secrets.azureKeyVault.clientIds $name) -}}
{{- end -}}
{{- end -}}
{{- $_ := required "kafka.brokers is required" $v.kafka.brokers -}}
{{- if and (eq $v.kafka.auth "none") (include "phonebill.kafkaUsesSasl" .) -}}
{{- fail (printf "kafka.securityProtocol %s authenticates: set kafka.auth to password or entra" $v.kafka.securityProtocol) -}}
{{- end -}}
{{- if and (eq $v.kafka.auth "password") (not (include "phonebill.kafkaUsesSasl" .)) -}}
{{- fail "kafka.auth password needs kafka.securityProtocol sasl_ssl (or sasl_plaintext)" -}}
{{- end -}}
{{- if and (eq $v.kafka.auth "password") (eq $v.secrets.provider "azure-key-vault") -}}
{{- $_ := required "kafka.auth password with Key Vault needs secrets.azureKeyVault.objects.kafka-sasl-password (the secret holding the broker's password)" (index $v.secrets.azureKeyVault.objects "kafka-sasl-password") -}}
{{- end -}}
{{- if eq $v.kafka.auth "entra" -}}
{{- if ne (lower $v.kafka.securityProtocol) "sasl_ssl" -}}
{{- fail "kafka.auth entra sends access tokens to the broker: it needs kafka.securityProtocol sasl_ssl" -}}
{{- end -}}
{{- if ne $v.secrets.provider "azure-key-vault" -}}
{{- fail "kafka.auth entra needs secrets.provider azure-key-vault: each service's token comes from its workload identity, which the chart sets up with Key Vault" -}}
{{- end -}}
{{- $_ := required "kafka.oauthScope is required with kafka.auth entra (terraform output helm_values: https://<namespace>.servicebus.windows.net/.default)" $v.kafka.oauthScope -}}
{{- end -}}
{{- if eq $v.environment "production" -}}
{{- $_ := required "image.registry is required in production (terraform output acr_login_server)" $v.image.registry -}}
{{- $_ := required "jwt.verifyKeys is required in production (terraform output helm_values)" $v.jwt.verifyKeys -}}
{{- $_ := required "kosSigning.verifyKeys is required in production (terraform output helm_values)" $v.kosSigning.verifyKeys -}}
{{- if not (include "phonebill.kafkaUsesSasl" .) -}}
{{- fail "production needs kafka.securityProtocol sasl_ssl (Event Hubs)" -}}
{{- end -}}
{{- end -}}
{{- if $v.ingress.enabled -}}
{{- $_ := required "ingress.host is required when the ingress is enabled" $v.ingress.host -}}
{{- range $v.ingress.routes -}}
{{- $target := index $v.services .service | default dict -}}
{{- if eq .service "web" -}}
{{- $target = dict "enabled" $v.web.enabled "public" true -}}
{{- end -}}
{{- if not (and $target.enabled $target.public) -}}
{{- fail (printf "ingress route %s points at %q, which is not an enabled public service" .path .service) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
How a new version reaches a service: "blueGreen" or "canary" through an Argo Rollouts
Rollout (release.rollouts on), or "" for a plain rolling Deployment.
Call with (dict "root" $ "svc" <service values>).
*/}}
{{- define "phonebill.releaseStrategy" -}}
{{- if and .root.Values.release.rollouts .svc.release -}}
{{- .svc.release.strategy -}}
{{- end -}}
{{- end -}}
