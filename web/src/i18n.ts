// Korean and English text. Korean is the default (the customers are Korean); the
// choice is kept in localStorage. Every problem code the APIs return has a message.
import type { Lang } from './format';

const en = {
  appName: 'phonebill',
  skipToContent: 'Skip to content',
  language: 'Language',
  switchTo: '한국어',
  logout: 'Log out',
  loading: 'Loading…',
  retry: 'Try again',
  back: 'Back',
  // login
  loginTitle: 'Log in',
  loginIntro: 'Log in with your customer ID to see your bills and change your plan.',
  customerId: 'Customer ID',
  password: 'Password',
  loginButton: 'Log in',
  loggingIn: 'Logging in…',
  sessionExpired: 'Your session has ended. Log in again to carry on where you were.',
  loggedOut: 'You have logged out.',
  lockedUntil: 'Unlocks at {time} (in about {minutes} min).',
  required: 'Enter your customer ID and password.',
  // navigation
  navBills: 'Bills',
  navChange: 'Change plan',
  navChanges: 'Change history',
  navInquiries: 'Inquiry history',
  yourLines: 'Your lines',
  line: 'Line',
  // bill menu
  menuTitle: 'Bills',
  customer: 'Customer',
  currentMonth: 'Current month',
  monthsWithBill: 'Months with a bill',
  noBills: 'No bill has been issued for this line yet.',
  viewBill: 'View bill',
  currentMonthBill: 'This month',
  // bill detail
  billTitle: 'Bill for {month}',
  product: 'Plan',
  contract: 'Contract',
  contractText: '{months}-month commitment, {from} – {to}',
  noCommitment: 'No commitment',
  billingMonth: 'Billing month',
  totalAmount: 'Total amount',
  monthlyFee: 'Monthly fee',
  usageCharges: 'Usage charges',
  discounts: 'Discounts',
  noDiscounts: 'None',
  usage: 'Usage',
  voice: 'Voice',
  sms: 'SMS',
  data: 'Data',
  earlyTerminationFee: 'Expected early-termination fee',
  deviceInstallmentBalance: 'Device installment balance',
  billingInfo: 'Billing and payment',
  billingDate: 'Billing date',
  dueDate: 'Due date',
  paymentStatus: 'Payment status',
  paymentMethod: 'Payment method',
  paidAt: 'Paid at',
  paidAmount: 'Amount paid',
  otherMonths: 'Other months',
  // product change
  changeTitle: 'Change plan',
  currentProduct: 'Current plan',
  operator: 'Operator',
  lineStatus: 'Line status',
  availableProducts: 'Plans you can change to',
  noAvailableProducts: 'No other plan is on sale for this line.',
  perMonth: '{fee} / month',
  allowance: 'Data {data} · Voice {voice} · SMS {sms}',
  unlimited: 'unlimited',
  checkButton: 'Check',
  checking: 'Checking…',
  precheckTitle: 'Pre-check',
  precheckOk: 'All checks passed. You can request the change.',
  precheckFailed: 'This change is not possible:',
  submitButton: 'Request change',
  submitting: 'Sending…',
  chooseProduct: 'Choose a plan first.',
  pendingChange: 'A change to {product} is already in progress ({status}).',
  requestTitle: 'Your request',
  requestId: 'Request',
  status: 'Status',
  requestedAt: 'Requested at',
  updatedAt: 'Updated at',
  newProduct: 'New plan',
  message: 'Message',
  failureReason: 'Reason',
  statusUpdating: 'This page updates by itself.',
  statusDone: 'Done.',
  seeHistory: 'See change history',
  newChange: 'Make another change',
  // histories
  changesTitle: 'Change history',
  inquiriesTitle: 'Bill inquiry history',
  noChanges: 'No change has been requested for this line.',
  noInquiries: 'No bill inquiry has been recorded for this line.',
  from: 'From',
  to: 'To',
  month: 'Month',
  result: 'Result',
  inquiredAt: 'Inquired at',
  page: 'Page {page} of {pages}',
  previous: 'Previous',
  next: 'Next',
  allStatuses: 'All',
  pagination: 'Pages',
  // problems
  forbiddenLineTitle: 'Not your line',
  notFoundTitle: 'Page not found',
  notFoundText: 'There is nothing at this address.',
  home: 'Go to my bills',
};

export type Key = keyof typeof en;

const ko: Record<Key, string> = {
  appName: '폰빌',
  skipToContent: '본문으로 건너뛰기',
  language: '언어',
  switchTo: 'English',
  logout: '로그아웃',
  loading: '불러오는 중…',
  retry: '다시 시도',
  back: '뒤로',
  loginTitle: '로그인',
  loginIntro: '고객 ID로 로그인하면 요금 청구서를 보고 요금제를 변경할 수 있습니다.',
  customerId: '고객 ID',
  password: '비밀번호',
  loginButton: '로그인',
  loggingIn: '로그인 중…',
  sessionExpired: '로그인 시간이 만료되었습니다. 다시 로그인하면 하던 작업을 이어서 할 수 있습니다.',
  loggedOut: '로그아웃되었습니다.',
  lockedUntil: '{time}에 잠금이 해제됩니다 (약 {minutes}분 후).',
  required: '고객 ID와 비밀번호를 입력해 주세요.',
  navBills: '요금 조회',
  navChange: '요금제 변경',
  navChanges: '변경 이력',
  navInquiries: '조회 이력',
  yourLines: '내 회선',
  line: '회선',
  menuTitle: '요금 조회',
  customer: '고객',
  currentMonth: '이번 달',
  monthsWithBill: '청구서가 있는 달',
  noBills: '이 회선에 발행된 청구서가 아직 없습니다.',
  viewBill: '청구서 보기',
  currentMonthBill: '이번 달',
  billTitle: '{month} 청구서',
  product: '요금제',
  contract: '약정',
  contractText: '{months}개월 약정, {from} ~ {to}',
  noCommitment: '무약정',
  billingMonth: '청구 월',
  totalAmount: '청구 금액',
  monthlyFee: '월정액',
  usageCharges: '사용 요금',
  discounts: '할인',
  noDiscounts: '없음',
  usage: '사용량',
  voice: '음성',
  sms: '문자',
  data: '데이터',
  earlyTerminationFee: '예상 해지 위약금',
  deviceInstallmentBalance: '단말기 할부 잔액',
  billingInfo: '청구 및 납부 정보',
  billingDate: '청구일',
  dueDate: '납부 기한',
  paymentStatus: '납부 상태',
  paymentMethod: '납부 방법',
  paidAt: '납부 일시',
  paidAmount: '납부 금액',
  otherMonths: '다른 달',
  changeTitle: '요금제 변경',
  currentProduct: '현재 요금제',
  operator: '통신사',
  lineStatus: '회선 상태',
  availableProducts: '변경 가능한 요금제',
  noAvailableProducts: '이 회선으로 변경할 수 있는 다른 요금제가 없습니다.',
  perMonth: '월 {fee}',
  allowance: '데이터 {data} · 음성 {voice} · 문자 {sms}',
  unlimited: '무제한',
  checkButton: '변경 가능 여부 확인',
  checking: '확인 중…',
  precheckTitle: '사전 확인',
  precheckOk: '모든 확인을 통과했습니다. 변경을 신청할 수 있습니다.',
  precheckFailed: '이 변경은 할 수 없습니다:',
  submitButton: '변경 신청',
  submitting: '신청 중…',
  chooseProduct: '먼저 요금제를 선택해 주세요.',
  pendingChange: '{product}(으)로의 변경이 이미 진행 중입니다 ({status}).',
  requestTitle: '신청 내역',
  requestId: '신청 번호',
  status: '상태',
  requestedAt: '신청 일시',
  updatedAt: '갱신 일시',
  newProduct: '새 요금제',
  message: '메시지',
  failureReason: '사유',
  statusUpdating: '이 화면은 자동으로 갱신됩니다.',
  statusDone: '처리가 끝났습니다.',
  seeHistory: '변경 이력 보기',
  newChange: '다른 변경 신청',
  changesTitle: '요금제 변경 이력',
  inquiriesTitle: '요금 조회 이력',
  noChanges: '이 회선의 변경 신청 내역이 없습니다.',
  noInquiries: '이 회선의 요금 조회 기록이 없습니다.',
  from: '이전',
  to: '이후',
  month: '월',
  result: '결과',
  inquiredAt: '조회 일시',
  page: '{pages}쪽 중 {page}쪽',
  previous: '이전',
  next: '다음',
  allStatuses: '전체',
  pagination: '페이지',
  forbiddenLineTitle: '본인 회선이 아닙니다',
  notFoundTitle: '페이지를 찾을 수 없습니다',
  notFoundText: '이 주소에는 아무것도 없습니다.',
  home: '내 요금 조회로 가기',
};

export const texts: Record<Lang, Record<Key, string>> = { en, ko };

export function t(lang: Lang, key: Key, vars?: Record<string, string | number>): string {
  let s = texts[lang][key];
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.split(`{${k}}`).join(String(v));
  return s;
}

type Pair = { ko: string; en: string };

/** A message for every problem `code` of command-service and query-service. */
export const problemMessages: Record<string, Pair> = {
  // auth (command-service login, every service's token checks)
  INVALID_CREDENTIALS: { ko: '고객 ID 또는 비밀번호를 확인해 주세요.', en: 'Check your customer ID or password.' },
  ACCOUNT_LOCKED: { ko: '로그인에 5번 연속 실패하여 계정이 30분 동안 잠겼습니다.', en: 'Your account is locked for 30 minutes after 5 failed logins in a row.' },
  INVALID_CUSTOMER_ID: { ko: '고객 ID 형식이 올바르지 않습니다.', en: 'That customer ID is not valid.' },
  INVALID_PASSWORD: { ko: '비밀번호 형식이 올바르지 않습니다.', en: 'That password is not valid.' },
  UNAUTHENTICATED: { ko: '로그인이 필요합니다. 다시 로그인해 주세요.', en: 'Please log in again.' },
  AUTH_UNAVAILABLE: { ko: '지금은 로그인을 확인할 수 없습니다. 잠시 후 다시 시도해 주세요.', en: 'We cannot check your login right now. Try again shortly.' },
  FORBIDDEN_LINE: { ko: '이 회선을 조회할 권한이 없습니다. 본인 명의의 회선만 볼 수 있습니다.', en: 'You have no permission for this line. You can only see lines you own.' },
  FORBIDDEN: { ko: '이 서비스를 이용할 권한이 없습니다.', en: 'You have no permission for this service.' },
  RATE_LIMITED: { ko: '요청이 너무 많습니다. {seconds}초 후 다시 시도해 주세요.', en: 'Too many requests. Try again in {seconds} s.' },
  // input
  MALFORMED_JSON: { ko: '요청을 처리할 수 없습니다 (잘못된 형식).', en: 'The request could not be read (malformed).' },
  INVALID_FIELDS: { ko: '요청 항목이 올바르지 않습니다.', en: 'Some fields of the request are not valid.' },
  INVALID_LINE_NUMBER: { ko: '회선 번호는 010-1234-5678 형식이어야 합니다.', en: 'A line number looks like 010-1234-5678.' },
  INVALID_PRODUCT_CODE: { ko: '요금제 코드가 올바르지 않습니다.', en: 'That plan code is not valid.' },
  INVALID_IDEMPOTENCY_KEY: { ko: '요청 식별 값이 올바르지 않습니다. 다시 시도해 주세요.', en: 'The request key is not valid. Try again.' },
  INVALID_MONTH: { ko: '월은 2026-03 형식이어야 합니다.', en: 'A month looks like 2026-03.' },
  INVALID_PARAMETER: { ko: '조회 조건이 올바르지 않습니다.', en: 'A search parameter is not valid.' },
  INVALID_STATUS: { ko: '알 수 없는 상태값입니다.', en: 'Unknown status.' },
  INVALID_REQUEST_ID: { ko: '신청 번호가 올바르지 않습니다.', en: 'That request number is not valid.' },
  PAYLOAD_TOO_LARGE: { ko: '요청이 너무 큽니다.', en: 'The request is too large.' },
  UNSUPPORTED_MEDIA_TYPE: { ko: '지원하지 않는 요청 형식입니다.', en: 'Unsupported request format.' },
  // not found
  LINE_NOT_FOUND: { ko: '회선을 찾을 수 없습니다.', en: 'That line was not found.' },
  BILL_NOT_FOUND: { ko: '이 달의 청구서가 없습니다.', en: 'There is no bill for this month.' },
  REQUEST_NOT_FOUND: { ko: '변경 신청을 찾을 수 없습니다.', en: 'That change request was not found.' },
  UNKNOWN_REQUEST: { ko: '변경 신청을 찾을 수 없습니다.', en: 'That change request was not found.' },
  // product change
  PRECHECK_FAILED: { ko: '사전 확인을 통과하지 못해 변경을 신청할 수 없습니다.', en: 'The change did not pass the pre-checks.' },
  CHANGE_IN_FLIGHT: { ko: '이 회선에 이미 처리 중인 요금제 변경이 있습니다. 끝난 뒤 다시 신청해 주세요.', en: 'A plan change is already in progress on this line. Try again once it has finished.' },
  IDEMPOTENCY_KEY_REUSED: { ko: '이미 다른 내용으로 보낸 신청입니다. 화면을 새로 열어 다시 신청해 주세요.', en: 'This request was already sent with different content. Start again.' },
  CONCURRENT_UPDATE: { ko: '동시에 다른 변경이 있었습니다. 다시 시도해 주세요.', en: 'Something else changed the line at the same time. Try again.' },
  // availability
  TIMEOUT: { ko: '처리 시간이 초과되었습니다. 잠시 후 다시 시도해 주세요.', en: 'That took too long. Try again shortly.' },
  PROJECTION_BEHIND: { ko: '최신 정보를 준비하고 있습니다. 잠시 후 다시 시도해 주세요.', en: 'The latest data is still being prepared. Try again shortly.' },
  READ_MODEL_UNAVAILABLE: { ko: '지금은 조회할 수 없습니다. 잠시 후 다시 시도해 주세요.', en: 'Data cannot be read right now. Try again shortly.' },
  INTERNAL: { ko: '일시적인 오류가 발생했습니다. 잠시 후 다시 시도해 주세요.', en: 'Something went wrong on our side. Try again shortly.' },
  // client side (no problem document)
  NETWORK: { ko: '서버에 연결할 수 없습니다. 인터넷 연결을 확인해 주세요.', en: 'Cannot reach the server. Check your connection.' },
  SERVICE_UNAVAILABLE: { ko: '서비스를 일시적으로 이용할 수 없습니다 (HTTP {status}).', en: 'The service is temporarily unavailable (HTTP {status}).' },
  UNKNOWN: { ko: '알 수 없는 오류가 발생했습니다 (HTTP {status}).', en: 'Something unexpected happened (HTTP {status}).' },
};

/** Pre-check codes (POST /product-changes/validation, 422 PRECHECK_FAILED). */
export const checkMessages: Record<string, Pair> = {
  TARGET_ON_SALE: { ko: '선택한 요금제가 현재 판매 중인지', en: 'The chosen plan is on sale' },
  SAME_OPERATOR: { ko: '회선과 같은 통신사의 요금제인지', en: 'The plan is sold by the line’s operator' },
  LINE_ACTIVE: { ko: '회선이 정지되지 않고 사용 중인지', en: 'The line is active (not suspended)' },
  TARGET_DIFFERS: { ko: '현재 요금제와 다른 요금제인지', en: 'The plan differs from the current one' },
  CURRENT_PRODUCT_MATCHES: { ko: '현재 요금제 정보가 최신인지', en: 'The current plan is up to date' },
  NO_CHANGE_IN_FLIGHT: { ko: '처리 중인 다른 변경이 없는지', en: 'No other change is in progress' },
};

export const statusLabels: Record<string, Pair> = {
  REQUESTED: { ko: '접수됨', en: 'Requested' },
  VALIDATED: { ko: '확인 완료', en: 'Validated' },
  PROCESSING: { ko: '처리 중', en: 'Processing' },
  COMPLETED: { ko: '완료', en: 'Completed' },
  FAILED: { ko: '실패', en: 'Failed' },
};

export const failureReasons: Record<string, Pair> = {
  PRECHECK_FAILED: { ko: '사전 확인 실패', en: 'Pre-check failed' },
  KOS_REJECTED: { ko: '통신사 시스템에서 거절됨', en: 'Rejected by the carrier’s system' },
  TIMEOUT: { ko: '통신사 응답 시간 초과', en: 'The carrier did not answer in time' },
};

export const paymentStatuses: Record<string, Pair> = {
  UNPAID: { ko: '미납', en: 'Unpaid' },
  PAID: { ko: '납부 완료', en: 'Paid' },
  OVERDUE: { ko: '연체', en: 'Overdue' },
};

export const paymentMethods: Record<string, Pair> = {
  AUTO_TRANSFER: { ko: '자동이체', en: 'Direct debit' },
  CARD: { ko: '카드', en: 'Card' },
  GIRO: { ko: '지로', en: 'Giro' },
};

export const lineStatuses: Record<string, Pair> = {
  ACTIVE: { ko: '사용 중', en: 'Active' },
  SUSPENDED: { ko: '정지', en: 'Suspended' },
  UNKNOWN: { ko: '확인 중', en: 'Unknown' },
};

export const inquiryResults: Record<string, Pair> = {
  FOUND: { ko: '조회됨', en: 'Found' },
  NOT_FOUND: { ko: '청구서 없음', en: 'No bill' },
};

/** A label from one of the tables above; the code itself when it is unknown. */
export function label(table: Record<string, Pair>, code: string | null | undefined, lang: Lang): string {
  if (!code) return '–';
  return table[code]?.[lang] ?? code;
}
